//! Framed records, the format of both the change log and the snapshot
//! files: `[length u32 LE][CRC-32 u32 LE][JSON]`. A record is whole or it
//! is not there: a crash in the middle of an append leaves a frame that is
//! cut short or fails its CRC at the very end of the file (a torn tail),
//! which reading drops and the next append overwrites. A bad frame
//! anywhere else is damage, and an error.

use std::fs::{File, OpenOptions};
use std::io::{BufReader, ErrorKind, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::RegistryError;

/// Larger than any record the registry writes (an import body is at most
/// 64 MiB); a length above it is damage, not a record.
const MAX_FRAME: u32 = 1 << 30;

pub(super) fn frame(json: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(json.len() + 8);
    out.extend_from_slice(&(json.len() as u32).to_le_bytes());
    out.extend_from_slice(&crc32fast::hash(json).to_le_bytes());
    out.extend_from_slice(json);
    out
}

pub(super) fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    // Our own types always serialize (string keys, finite floats checked
    // on the way in).
    frame(&serde_json::to_vec(value).unwrap_or_default())
}

/// What reading a file of frames ended with.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum End {
    /// The file ends after a whole frame.
    Clean,
    /// A frame was cut short or failed its CRC and nothing but zeros
    /// follows it: an append a crash interrupted. The file is good up to
    /// `at`.
    Torn { at: u64 },
}

/// Reads every frame of `path` in order, handing each one's JSON to `each`.
/// Stops at a torn tail (reported), errs on damage elsewhere.
pub(super) fn read_frames(
    path: &Path,
    mut each: impl FnMut(&[u8]) -> Result<(), String>,
) -> Result<End, RegistryError> {
    let corrupt = |message: String| RegistryError::Corrupt {
        path: path.to_owned(),
        message,
    };
    let read_err = |source| RegistryError::Read {
        path: path.to_owned(),
        source,
    };
    let file = File::open(path).map_err(read_err)?;
    let size = file.metadata().map_err(read_err)?.len();
    let mut r = BufReader::with_capacity(1 << 20, file);
    let mut at = 0u64;
    let mut buf = Vec::new();
    loop {
        if at == size {
            return Ok(End::Clean);
        }
        let mut head = [0u8; 8];
        let whole = read_full(&mut r, &mut head).map_err(read_err)?;
        let len = u32::from_le_bytes(head[..4].try_into().unwrap_or_default());
        let crc = u32::from_le_bytes(head[4..].try_into().unwrap_or_default());
        let end = at + 8 + u64::from(len);
        if whole && len == 0 {
            // No record is empty: zeros a file system padded a torn
            // append with, or damage.
            return if zeros_from(path, at).map_err(read_err)? {
                Ok(End::Torn { at })
            } else {
                Err(corrupt(format!("the record at byte {at} is empty")))
            };
        }
        if !whole || len > MAX_FRAME || end > size {
            // Cut short: only the last append can be (appends are the only
            // writes), so this is a torn tail.
            return Ok(End::Torn { at });
        }
        buf.resize(len as usize, 0);
        r.read_exact(&mut buf).map_err(read_err)?;
        if crc32fast::hash(&buf) != crc {
            // Whole but wrong: torn if it is the last thing in the file
            // (what follows, if anything, is zeros a file system padded
            // with); damage if records follow.
            return if zeros_from(path, end).map_err(read_err)? {
                Ok(End::Torn { at })
            } else {
                Err(corrupt(format!(
                    "the record at byte {at} is damaged (CRC mismatch) and records follow it"
                )))
            };
        }
        each(&buf).map_err(|m| corrupt(format!("the record at byte {at}: {m}")))?;
        at = end;
    }
}

/// Fills `buf` unless the reader ends first (false then).
fn read_full(r: &mut impl Read, buf: &mut [u8]) -> std::io::Result<bool> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..]) {
            Ok(0) => return Ok(false),
            Ok(k) => n += k,
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(true)
}

/// Whether the file holds nothing but zeros from `from` on.
fn zeros_from(path: &Path, from: u64) -> std::io::Result<bool> {
    let mut f = File::open(path)?;
    f.seek(SeekFrom::Start(from))?;
    let mut r = BufReader::new(f);
    let mut buf = [0u8; 1 << 16];
    loop {
        let n = r.read(&mut buf)?;
        if n == 0 {
            return Ok(true);
        }
        if buf[..n].iter().any(|b| *b != 0) {
            return Ok(false);
        }
    }
}

/// Reads the JSON of one frame as `T`.
pub(super) fn decode<T: DeserializeOwned>(json: &[u8]) -> Result<T, String> {
    crate::json::parse(json).map_err(|e| e.message())
}

/// Creates (or truncates) `path` for the engine's user only.
pub(super) fn create_private(path: &Path) -> std::io::Result<File> {
    let f = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    // A file left by a crash keeps its old mode unless told.
    use std::os::unix::fs::PermissionsExt;
    f.set_permissions(std::fs::Permissions::from_mode(0o600))?;
    Ok(f)
}

pub(super) fn sync_dir(dir: &Path) -> std::io::Result<()> {
    File::open(dir)?.sync_all()
}

/// The open segment of the change log: appends one frame per change and
/// makes it durable before the change is seen.
#[derive(Debug)]
pub(super) struct Appender {
    pub path: PathBuf,
    file: File,
    /// Bytes of whole frames; an append that fails is cut back to here.
    pub len: u64,
    /// Set when a failed append could not be cut back: the file's end is
    /// unknown, so nothing more is appended until a restart reads it anew.
    broken: bool,
}

impl Appender {
    /// Opens `path` for appending after its first `len` good bytes
    /// (dropping a torn tail).
    pub(super) fn open(path: &Path, len: u64) -> Result<Appender, RegistryError> {
        let err = |source| RegistryError::Write {
            path: path.to_owned(),
            source,
        };
        let mut file = OpenOptions::new().write(true).open(path).map_err(err)?;
        if file.metadata().map_err(err)?.len() != len {
            file.set_len(len).map_err(err)?;
            file.sync_all().map_err(err)?;
        }
        file.seek(SeekFrom::Start(len)).map_err(err)?;
        Ok(Appender {
            path: path.to_owned(),
            file,
            len,
            broken: false,
        })
    }

    /// Creates a new segment holding `header`, durable with its folder entry.
    pub(super) fn create(path: &Path, header: &[u8]) -> Result<Appender, RegistryError> {
        let err = |source| RegistryError::Write {
            path: path.to_owned(),
            source,
        };
        let mut file = create_private(path).map_err(err)?;
        file.write_all(header).map_err(err)?;
        file.sync_all().map_err(err)?;
        if let Some(dir) = path.parent() {
            sync_dir(dir).map_err(err)?;
        }
        Ok(Appender {
            path: path.to_owned(),
            file,
            len: header.len() as u64,
            broken: false,
        })
    }

    /// Appends one frame and waits until it is on disk.
    pub(super) fn append(&mut self, frame: &[u8]) -> Result<(), RegistryError> {
        let err = |source| RegistryError::Write {
            path: self.path.clone(),
            source,
        };
        if self.broken {
            return Err(err(std::io::Error::other(
                "an earlier write to the change log failed and could not be undone; restart the engine",
            )));
        }
        let written = self
            .file
            .write_all(frame)
            .and_then(|()| self.file.sync_data());
        if let Err(e) = written {
            // Cut the partial frame off, so the next append follows a whole one.
            let undone = self
                .file
                .set_len(self.len)
                .and_then(|()| self.file.seek(SeekFrom::Start(self.len)).map(|_| ()))
                .and_then(|()| self.file.sync_data());
            if undone.is_err() {
                self.broken = true;
            }
            return Err(err(e));
        }
        self.len += frame.len() as u64;
        Ok(())
    }
}
