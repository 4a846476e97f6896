use std::path::PathBuf;

/// Everything that can go wrong in the registry. Validation errors name the
/// entity (and its index in an import document), its id and the field.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("{}: {field}: {message}", where_(entity, *index, id_field, id))]
    Invalid {
        /// `owners` in an import document, `owner` for a single entity.
        entity: &'static str,
        index: Option<usize>,
        id_field: &'static str,
        id: String,
        field: String,
        message: String,
    },
    #[error("{message}")]
    BadDocument { message: String },
    #[error("{entity} {id:?} already exists")]
    AlreadyExists { entity: &'static str, id: String },
    #[error("{entity} {id:?} not found")]
    NotFound { entity: &'static str, id: String },
    #[error("{entity} {id:?} is still referenced by {by}")]
    InUse {
        entity: &'static str,
        id: String,
        by: String,
    },
    #[error("cannot read the registry file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the registry file {path} is corrupt: {message}")]
    Corrupt { path: PathBuf, message: String },
    #[error("cannot save the registry to {path}: {source} (nothing was changed)")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
}

fn where_(entity: &str, index: Option<usize>, id_field: &str, id: &str) -> String {
    match index {
        Some(i) => format!("{entity}[{i}] ({id_field} {id:?})"),
        None => format!("{entity} {id:?}"),
    }
}
