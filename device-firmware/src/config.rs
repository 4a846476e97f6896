//! The gateway's configuration file (`vigil-edge.toml`): the broker, the
//! spool, and one `[[device]]` per controller. docs/edge.md documents every
//! key; device-firmware/vigil-edge.example.toml is a complete example.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

use crate::error::{EdgeError, line_col};
use crate::map::RegisterMap;

/// Where the engine's broker is and how to reach it.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MqttConfig {
    /// `host:port` of the engine's MQTT listener.
    pub broker: String,
    #[serde(default = "default_keep_alive")]
    pub keep_alive_s: u64,
    /// The CA that signed the broker's certificate (PEM): set it, and give
    /// each device `cert` and `key`, for mutual TLS.
    pub ca: Option<PathBuf>,
    /// The name the broker's certificate is for [default: the broker host].
    pub server_name: Option<String>,
    /// Re-send from the ack watermark when acks stall this long.
    #[serde(default = "default_stall")]
    pub ack_stall_s: u64,
}

fn default_keep_alive() -> u64 {
    30
}

fn default_stall() -> u64 {
    10
}

/// The on-disk spool.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SpoolConfig {
    pub dir: PathBuf,
    /// Bound of the spool on disk; when full, idle repeats go first.
    #[serde(default = "default_max_mb")]
    pub max_mb: u64,
    /// Group fsyncs: at most one per this many milliseconds.
    #[serde(default = "default_sync_ms")]
    pub sync_ms: u64,
    /// Size of one spool file.
    #[serde(default = "default_segment_kb")]
    pub segment_kb: u64,
}

fn default_max_mb() -> u64 {
    64
}

fn default_sync_ms() -> u64 {
    200
}

fn default_segment_kb() -> u64 {
    1024
}

/// One controller and the Vigil device it speaks as.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeviceConfig {
    /// The registry's device id (`[A-Za-z0-9]{1,64}`).
    pub id: Spanned<String>,
    /// Development login: the device's secret from the registry.
    pub secret: Option<String>,
    /// Mutual TLS: the device's certificate and key (PEM).
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
    /// A shipped map (`elevator`, `ride`, `filling-scale`) or a path,
    /// relative to the config file.
    pub map: Spanned<String>,
    /// `tcp://host:port` or `rtu:///dev/ttyUSB0?baud=9600&parity=N&stop=1`.
    pub controller: Spanned<String>,
    /// Modbus unit (slave) id.
    #[serde(default = "default_unit")]
    pub unit: u8,
    #[serde(default = "default_poll_ms")]
    pub poll_ms: u64,
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u64,
}

fn default_unit() -> u8 {
    1
}

fn default_poll_ms() -> u64 {
    250
}

fn default_timeout_ms() -> u64 {
    1000
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    mqtt: MqttConfig,
    spool: SpoolConfig,
    #[serde(rename = "device")]
    devices: Vec<DeviceConfig>,
}

/// A serial line's settings.
#[derive(Debug, Clone, PartialEq)]
pub struct Serial {
    pub path: String,
    pub baud: u32,
    /// `N`, `E` or `O`.
    pub parity: char,
    pub stop_bits: u8,
}

/// How the gateway reaches a controller.
#[derive(Debug, Clone, PartialEq)]
pub enum Controller {
    Tcp(SocketAddr),
    Rtu(Serial),
}

impl std::fmt::Display for Controller {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Controller::Tcp(a) => write!(f, "tcp://{a}"),
            Controller::Rtu(s) => write!(f, "rtu://{}", s.path),
        }
    }
}

/// A checked device: its map loaded, its controller parsed.
#[derive(Debug, Clone)]
pub struct Device {
    pub id: String,
    pub login: Login,
    pub map: RegisterMap,
    pub controller: Controller,
    pub unit: u8,
    pub poll: Duration,
    pub timeout: Duration,
}

/// How a device logs in to the broker.
#[derive(Debug, Clone)]
pub enum Login {
    /// Plain TCP, username = device id, password = secret.
    Secret(String),
    /// Mutual TLS with the device's certificate.
    Certificate { cert: PathBuf, key: PathBuf },
}

/// The whole, checked configuration.
#[derive(Debug, Clone)]
pub struct GatewayConfig {
    pub mqtt: MqttConfig,
    pub spool: SpoolConfig,
    pub devices: Vec<Device>,
}

impl GatewayConfig {
    pub fn load(path: &Path) -> Result<GatewayConfig, EdgeError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| EdgeError::io("cannot read config", path, e))?;
        GatewayConfig::parse(&text, path)
    }

    pub fn parse(text: &str, file: &Path) -> Result<GatewayConfig, EdgeError> {
        let at = |span: std::ops::Range<usize>, message: String| {
            let (line, column) = line_col(text, span.start);
            EdgeError::Config {
                file: file.to_path_buf(),
                line,
                column,
                message,
            }
        };
        let raw: RawConfig = toml::from_str(text).map_err(|e| {
            let msg = e.message().trim().replace('\n', "; ");
            at(e.span().unwrap_or(0..0), msg)
        })?;
        let base = file.parent().unwrap_or(Path::new("."));
        let resolve = |p: &Path| {
            if p.is_absolute() {
                p.to_path_buf()
            } else {
                base.join(p)
            }
        };
        let mut devices: Vec<Device> = Vec::new();
        for d in &raw.devices {
            let id = d.id.get_ref().clone();
            if id.is_empty() || id.len() > 64 || !id.bytes().all(|b| b.is_ascii_alphanumeric()) {
                return Err(at(
                    d.id.span(),
                    format!("device id {id:?}: 1–64 letters and digits"),
                ));
            }
            if devices.iter().any(|o| o.id == id) {
                return Err(at(d.id.span(), format!("device {id} is configured twice")));
            }
            let login = match (&d.secret, &d.cert, &d.key) {
                (Some(s), None, None) => Login::Secret(s.clone()),
                (None, Some(c), Some(k)) => {
                    if raw.mqtt.ca.is_none() {
                        return Err(at(
                            d.id.span(),
                            format!("device {id} logs in with a certificate: [mqtt] needs `ca`"),
                        ));
                    }
                    Login::Certificate {
                        cert: resolve(c),
                        key: resolve(k),
                    }
                }
                _ => {
                    return Err(at(
                        d.id.span(),
                        format!("device {id}: give either `secret` or both `cert` and `key`"),
                    ));
                }
            };
            let map_spec = d.map.get_ref();
            let map_spec = if crate::map::BUILTIN.iter().any(|(n, _)| n == map_spec) {
                map_spec.clone()
            } else {
                resolve(Path::new(map_spec)).to_string_lossy().into_owned()
            };
            let map = RegisterMap::load(&map_spec)?;
            let controller =
                parse_controller(d.controller.get_ref()).map_err(|m| at(d.controller.span(), m))?;
            if d.poll_ms < 50 || d.timeout_ms < 50 {
                return Err(at(
                    d.id.span(),
                    format!("device {id}: poll_ms and timeout_ms are at least 50"),
                ));
            }
            devices.push(Device {
                id,
                login,
                map,
                controller,
                unit: d.unit,
                poll: Duration::from_millis(d.poll_ms),
                timeout: Duration::from_millis(d.timeout_ms),
            });
        }
        if devices.is_empty() {
            return Err(at(0..0, "no [[device]] configured".to_owned()));
        }
        let mut mqtt = raw.mqtt.clone();
        mqtt.ca = mqtt.ca.as_deref().map(resolve);
        let mut spool = raw.spool.clone();
        spool.dir = resolve(&spool.dir);
        if spool.max_mb == 0
            || spool.segment_kb < 16
            || spool.segment_kb * 1024 * 4 > spool.max_mb * 1024 * 1024
        {
            return Err(at(
                0..0,
                "[spool]: max_mb ≥ 1 and segment_kb between 16 and a quarter of max_mb".to_owned(),
            ));
        }
        Ok(GatewayConfig {
            mqtt,
            spool,
            devices,
        })
    }
}

/// `tcp://host:port` or `rtu:///dev/ttyUSB0?baud=9600&parity=N&stop=1`.
pub fn parse_controller(s: &str) -> Result<Controller, String> {
    if let Some(addr) = s.strip_prefix("tcp://") {
        use std::net::ToSocketAddrs;
        let addr = addr
            .to_socket_addrs()
            .map_err(|e| format!("controller {s:?}: {e}"))?
            .next()
            .ok_or_else(|| format!("controller {s:?}: no address"))?;
        return Ok(Controller::Tcp(addr));
    }
    if let Some(rest) = s.strip_prefix("rtu://") {
        let (path, query) = rest.split_once('?').unwrap_or((rest, ""));
        if path.is_empty() {
            return Err(format!("controller {s:?}: no serial device path"));
        }
        let mut serial = Serial {
            path: path.to_owned(),
            baud: 9600,
            parity: 'N',
            stop_bits: 1,
        };
        for kv in query.split('&').filter(|kv| !kv.is_empty()) {
            let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
            match k {
                "baud" => {
                    serial.baud = v
                        .parse()
                        .map_err(|_| format!("baud {v:?} is not a number"))?
                }
                "parity" if matches!(v, "N" | "E" | "O") => {
                    serial.parity = v.chars().next().unwrap_or('N')
                }
                "stop" if matches!(v, "1" | "2") => serial.stop_bits = if v == "2" { 2 } else { 1 },
                _ => {
                    return Err(format!(
                        "serial option {kv:?}: baud=N, parity=N|E|O, stop=1|2"
                    ));
                }
            }
        }
        return Ok(Controller::Rtu(serial));
    }
    Err(format!(
        "controller {s:?}: tcp://host:port or rtu:///dev/ttyX?baud=9600"
    ))
}
