//! Rule conditions as text: parsed, type-checked against a stream's fields,
//! evaluated without allocation. (Being written.)
