//! The gateway's side of Modbus: one connection to one controller (TCP, or
//! RTU on a serial line), read in as few requests as the map allows.

use std::time::Duration;

use tokio::time::timeout;
use tokio_modbus::client::{Context, Reader, Writer, rtu, tcp};
use tokio_modbus::{ExceptionCode, Slave};

use crate::config::Controller;
use crate::error::EdgeError;
use crate::map::{Function, RegisterMap};

/// Registers further apart than this are read in separate requests.
const MAX_GAP: u16 = 8;
/// Per request: Modbus allows 125 registers or 2000 bits.
const MAX_REGISTERS: u16 = 120;
const MAX_BITS: u16 = 1000;

/// One read request of the poll plan.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Block {
    pub function: Function,
    pub start: u16,
    pub count: u16,
}

/// What one poll read: each block's words (bits as 0 or 1).
#[derive(Debug, Clone, Default)]
pub(crate) struct Image {
    blocks: Vec<(Block, Vec<u16>)>,
}

impl Image {
    #[cfg(test)]
    pub(crate) fn from_blocks(blocks: Vec<(Block, Vec<u16>)>) -> Image {
        Image { blocks }
    }

    /// The `width` words at `address`, if one block holds them all.
    pub(crate) fn words(&self, function: Function, address: u16, width: u16) -> Option<&[u16]> {
        self.blocks.iter().find_map(|(b, words)| {
            let end = u32::from(b.start) + u32::from(b.count);
            (b.function == function
                && address >= b.start
                && u32::from(address) + u32::from(width) <= end)
                .then(|| {
                    let i = usize::from(address - b.start);
                    &words[i..i + usize::from(width)]
                })
        })
    }
}

/// The fewest requests that cover every location of `map`.
pub(crate) fn plan(map: &RegisterMap) -> Vec<Block> {
    let mut locs = map.locations();
    locs.sort_by_key(|(f, a, _)| (*f, *a));
    let mut blocks: Vec<Block> = Vec::new();
    for (function, address, width) in locs {
        let limit = if function.is_bit() {
            MAX_BITS
        } else {
            MAX_REGISTERS
        };
        let end = u32::from(address) + u32::from(width);
        if let Some(b) = blocks.last_mut()
            && b.function == function
            && u32::from(address) <= u32::from(b.start) + u32::from(b.count) + u32::from(MAX_GAP)
            && end - u32::from(b.start) <= u32::from(limit)
        {
            b.count = b.count.max((end - u32::from(b.start)) as u16);
            continue;
        }
        blocks.push(Block {
            function,
            start: address,
            count: width,
        });
    }
    blocks
}

/// A connection to one controller, made on first use and again after a
/// transport error.
pub(crate) struct Poller {
    controller: Controller,
    unit: u8,
    timeout: Duration,
    blocks: Vec<Block>,
    ctx: Option<Context>,
}

impl Poller {
    pub(crate) fn new(
        controller: Controller,
        unit: u8,
        timeout: Duration,
        map: &RegisterMap,
    ) -> Poller {
        Poller {
            blocks: plan(map),
            controller,
            unit,
            timeout,
            ctx: None,
        }
    }

    fn error(&self, op: String, exception: Option<ExceptionCode>, message: String) -> EdgeError {
        EdgeError::Modbus {
            controller: format!("{} unit {}", self.controller, self.unit),
            op,
            exception: exception.map(|e| format!("{e:?}")),
            message,
        }
    }

    async fn connect(&mut self) -> Result<&mut Context, EdgeError> {
        if let Some(ctx) = self.ctx.take() {
            return Ok(self.ctx.insert(ctx));
        }
        {
            let slave = Slave(self.unit);
            let ctx = match &self.controller {
                Controller::Tcp(addr) => timeout(self.timeout, tcp::connect_slave(*addr, slave))
                    .await
                    .map_err(|_| self.error("connect".into(), None, "timed out".into()))?
                    .map_err(|e| self.error("connect".into(), None, e.to_string()))?,
                Controller::Rtu(serial) => {
                    use tokio_serial::SerialPortBuilderExt;
                    let parity = match serial.parity {
                        'E' => tokio_serial::Parity::Even,
                        'O' => tokio_serial::Parity::Odd,
                        _ => tokio_serial::Parity::None,
                    };
                    let stop = if serial.stop_bits == 2 {
                        tokio_serial::StopBits::Two
                    } else {
                        tokio_serial::StopBits::One
                    };
                    let port = tokio_serial::new(&serial.path, serial.baud)
                        .parity(parity)
                        .stop_bits(stop)
                        .open_native_async()
                        .map_err(|e| self.error("open serial port".into(), None, e.to_string()))?;
                    rtu::attach_slave(port, slave)
                }
            };
            Ok(self.ctx.insert(ctx))
        }
    }

    /// Reads every block. A transport error or timeout drops the connection
    /// (the next poll reconnects); an exception keeps it.
    pub(crate) async fn poll(&mut self) -> Result<Image, EdgeError> {
        let mut image = Image::default();
        for block in self.blocks.clone() {
            let op = format!(
                "read {} {}–{}",
                block.function.as_str(),
                block.start,
                u32::from(block.start) + u32::from(block.count) - 1
            );
            let wait = self.timeout;
            let ctx = self.connect().await?;
            let (start, count) = (block.start, block.count);
            let result = timeout(wait, async {
                match block.function {
                    Function::Coil => ctx.read_coils(start, count).await.map(|r| r.map(bits)),
                    Function::Discrete => ctx
                        .read_discrete_inputs(start, count)
                        .await
                        .map(|r| r.map(bits)),
                    Function::Holding => ctx.read_holding_registers(start, count).await,
                    Function::Input => ctx.read_input_registers(start, count).await,
                }
            })
            .await;
            match result {
                Ok(Ok(Ok(mut words))) => {
                    words.resize(usize::from(count), 0);
                    image.blocks.push((block, words));
                }
                Ok(Ok(Err(exception))) => {
                    return Err(self.error(op, Some(exception), format!("exception {exception}")));
                }
                Ok(Err(e)) => {
                    self.ctx = None;
                    return Err(self.error(op, None, e.to_string()));
                }
                Err(_) => {
                    self.ctx = None;
                    return Err(self.error(
                        op,
                        None,
                        format!("no answer within {} ms", wait.as_millis()),
                    ));
                }
            }
        }
        Ok(image)
    }

    /// Writes one coil (the filling scale's record acknowledgement).
    pub(crate) async fn write_coil(&mut self, address: u16, value: bool) -> Result<(), EdgeError> {
        let op = format!("write coil {address}");
        let wait = self.timeout;
        let ctx = self.connect().await?;
        match timeout(wait, ctx.write_single_coil(address, value)).await {
            Ok(Ok(Ok(()))) => Ok(()),
            Ok(Ok(Err(exception))) => {
                Err(self.error(op, Some(exception), format!("exception {exception}")))
            }
            Ok(Err(e)) => {
                self.ctx = None;
                Err(self.error(op, None, e.to_string()))
            }
            Err(_) => {
                self.ctx = None;
                Err(self.error(
                    op,
                    None,
                    format!("no answer within {} ms", wait.as_millis()),
                ))
            }
        }
    }
}

fn bits(v: Vec<bool>) -> Vec<u16> {
    v.into_iter().map(u16::from).collect()
}
