//! Vigil patch: one latest-value topic per client, delivered by its socket
//! task past the router.
//!
//! An embedder that tells each client something only the newest of which
//! matters (Vigil's ack watermark, `{"seq": N}`) pays the router twice per
//! message when it publishes through it: the router appends to the topic's
//! log and wakes the connection's link, and the client's PUBACK goes back to
//! the router to clear its in-flight entry. Here the embedder `put`s the
//! value into the client's mailbox and wakes the socket task, which writes
//! it; a value put before the last was written replaces it, and the client's
//! PUBACK ends in the socket task.
//!
//! A client has at most one mailbox topic, `topic_of(client id)`. A
//! SUBSCRIBE whose every filter is that topic is answered by the socket task
//! (granted QoS 0 or 1), and so is an UNSUBSCRIBE of it; anything else goes
//! to the router as before, so a subscription the router holds is never
//! served from here. A value put while nobody is subscribed is dropped, as
//! the router would drop a publish without subscribers. For a persistent
//! session (clean session off) the subscription outlives the connection:
//! the next connection of that session delivers the value put while it was
//! away, or the last one not acknowledged, as a session's queued messages
//! would be.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::Notify;

use crate::protocol::{Publish, QoS};

/// Packet ids of mailbox deliveries: above any the router gives (it counts
/// 1 ..= 100), so the client's PUBACK tells which side it is for.
pub(crate) const FIRST_PKID: u16 = 0x8000;

type TopicOf = dyn Fn(&str) -> Option<String> + Send + Sync;

/// Every client's mailbox (`ConnectionSettings::mailboxes`).
#[derive(Clone)]
pub struct Mailboxes {
    topic_of: Arc<TopicOf>,
    boxes: Arc<Mutex<HashMap<Arc<str>, Arc<Mailbox>>>>,
    hold_pubacks: Option<Duration>,
}

pub(crate) struct Mailbox {
    topic: Bytes,
    mail: Mutex<Mail>,
}

#[derive(Default)]
struct Mail {
    /// The subscription's granted QoS; kept while away for a persistent
    /// session.
    qos: Option<QoS>,
    persistent: bool,
    value: Option<Bytes>,
    /// `value` has not been written yet.
    fresh: bool,
    /// Packet id of the last QoS 1 delivery not PUBACKed yet.
    unacked: Option<u16>,
    /// The connection serving it now, named by its wake-up.
    reader: Option<Arc<Notify>>,
}

impl Mail {
    fn read_by(&self, notify: &Arc<Notify>) -> bool {
        self.reader.as_ref().is_some_and(|n| Arc::ptr_eq(n, notify))
    }
}

/// A connection's side: its client's topic, the mailbox once subscribed,
/// and what wakes it.
pub(crate) struct Reader {
    boxes: Mailboxes,
    topic: String,
    /// Wakes this connection; also names it in the mailbox it reads.
    notify: Arc<Notify>,
    attached: Option<Arc<Mailbox>>,
    /// Subscribed as far as this connection knows (a takeover may have
    /// ended it since; then held PUBACKs wait out their hold).
    subscribed: bool,
    next_pkid: u16,
}

impl Mailboxes {
    /// `topic_of` names a client's mailbox topic (`None`: the client has
    /// none, and everything it subscribes to goes to the router).
    pub fn new(topic_of: impl Fn(&str) -> Option<String> + Send + Sync + 'static) -> Mailboxes {
        Mailboxes {
            topic_of: Arc::new(topic_of),
            boxes: Arc::default(),
            hold_pubacks: None,
        }
    }

    /// A client subscribed to its mailbox has the PUBACKs of its publishes
    /// held for up to `hold`, to be written with the mailbox's next value
    /// (when that value usually follows a publish, as an ack does): one
    /// segment and one wake-up of the client instead of two.
    pub fn hold_pubacks(mut self, hold: Duration) -> Mailboxes {
        self.hold_pubacks = Some(hold).filter(|h| !h.is_zero());
        self
    }

    /// Puts `value` into the mailbox of `topic` and wakes its connection.
    /// `false`: nobody is subscribed (now, or in a persistent session), and
    /// the value is dropped.
    pub fn put(&self, topic: &str, value: Bytes) -> bool {
        let Some(mailbox) = self.boxes.lock().unwrap().get(topic).cloned() else {
            return false;
        };
        let mut mail = mailbox.mail.lock().unwrap();
        if mail.qos.is_none() {
            return false;
        }
        mail.value = Some(value);
        mail.fresh = true;
        if let Some(notify) = &mail.reader {
            notify.notify_one();
        }
        true
    }

    /// The connection of `client_id` starts: with a clean session the
    /// client's old subscription is gone, else the connection takes it over
    /// and owes the client what it has not acknowledged.
    pub(crate) fn reader(&self, client_id: &str, clean_session: bool) -> Option<Reader> {
        let topic = (self.topic_of)(client_id)?;
        let mut reader = Reader {
            boxes: self.clone(),
            notify: Arc::new(Notify::new()),
            attached: None,
            subscribed: false,
            next_pkid: FIRST_PKID,
            topic,
        };
        let mut boxes = self.boxes.lock().unwrap();
        if clean_session {
            if let Some(old) = boxes.remove(reader.topic.as_str()) {
                let mut mail = old.mail.lock().unwrap();
                // A connection still serving it (taken over) finds it
                // unsubscribed and stops delivering.
                *mail = Mail {
                    reader: mail.reader.take(),
                    ..Mail::default()
                };
            }
        } else if let Some(mailbox) = boxes.get(reader.topic.as_str()).cloned() {
            drop(boxes);
            let mut mail = mailbox.mail.lock().unwrap();
            if mail.qos.is_some() {
                mail.fresh |= mail.unacked.take().is_some();
                mail.reader = Some(Arc::clone(&reader.notify));
                if mail.fresh {
                    reader.notify.notify_one();
                }
                drop(mail);
                reader.attached = Some(mailbox);
                reader.subscribed = true;
            }
        }
        Some(reader)
    }
}

impl Reader {
    /// Whether every filter of a SUBSCRIBE or UNSUBSCRIBE is this client's
    /// mailbox topic (then the packet is this reader's to answer).
    pub(crate) fn takes<'a>(&self, filters: impl Iterator<Item = &'a str>) -> bool {
        let mut filters = filters.peekable();
        filters.peek().is_some() && filters.all(|f| f == self.topic)
    }

    /// Subscribes at `qos` (QoS 2 is granted as 1); returns the granted QoS.
    pub(crate) fn subscribe(&mut self, qos: QoS, persistent: bool) -> QoS {
        let granted = match qos {
            QoS::AtMostOnce => QoS::AtMostOnce,
            _ => QoS::AtLeastOnce,
        };
        let mailbox = Arc::clone(
            self.boxes
                .boxes
                .lock()
                .unwrap()
                .entry(Arc::from(self.topic.as_str()))
                .or_insert_with(|| {
                    Arc::new(Mailbox {
                        topic: Bytes::copy_from_slice(self.topic.as_bytes()),
                        mail: Mutex::default(),
                    })
                }),
        );
        {
            let mut mail = mailbox.mail.lock().unwrap();
            mail.qos = Some(granted);
            mail.persistent = persistent;
            mail.reader = Some(Arc::clone(&self.notify));
        }
        self.attached = Some(mailbox);
        self.subscribed = true;
        granted
    }

    /// Unsubscribes; `false` if it was not subscribed.
    pub(crate) fn unsubscribe(&mut self) -> bool {
        self.subscribed = false;
        let Some(mailbox) = self.attached.take() else {
            return false;
        };
        self.forget(&mailbox);
        let mut mail = mailbox.mail.lock().unwrap();
        let ours = mail.read_by(&self.notify);
        if ours {
            *mail = Mail::default();
        }
        ours
    }

    /// Takes the client's topic off the map if `mailbox` is still the one
    /// there (a clean session's new connection may have put another).
    fn forget(&self, mailbox: &Arc<Mailbox>) {
        let mut boxes = self.boxes.boxes.lock().unwrap();
        if boxes
            .get(self.topic.as_str())
            .is_some_and(|b| Arc::ptr_eq(b, mailbox))
        {
            boxes.remove(self.topic.as_str());
        }
    }

    /// How long this connection holds PUBACKs for the mailbox's next write
    /// (`None`: it writes them at once).
    pub(crate) fn holds_pubacks(&self) -> Option<Duration> {
        self.boxes.hold_pubacks.filter(|_| self.subscribed)
    }

    /// What wakes this connection when a value is put.
    pub(crate) fn notify(&self) -> Arc<Notify> {
        Arc::clone(&self.notify)
    }

    /// The value to write, if one was put since the last: at the granted
    /// QoS, a QoS 1 one with the next mailbox packet id.
    pub(crate) fn take(&mut self) -> Option<Publish> {
        let mailbox = self.attached.as_ref()?;
        let mut mail = mailbox.mail.lock().unwrap();
        if !mail.read_by(&self.notify) || !mail.fresh {
            return None;
        }
        let qos = mail.qos?;
        let value = mail.value.clone()?;
        mail.fresh = false;
        let mut publish = Publish::new(mailbox.topic.clone(), value, false);
        if qos != QoS::AtMostOnce {
            publish.qos = QoS::AtLeastOnce;
            publish.pkid = self.next_pkid;
            mail.unacked = Some(self.next_pkid);
            self.next_pkid = self.next_pkid.checked_add(1).unwrap_or(FIRST_PKID);
        }
        Some(publish)
    }

    /// A PUBACK with a mailbox packet id: the delivery it names is done (an
    /// older one, overtaken by a newer value, changes nothing).
    pub(crate) fn acked(&mut self, pkid: u16) {
        if let Some(mailbox) = &self.attached {
            let mut mail = mailbox.mail.lock().unwrap();
            if mail.unacked == Some(pkid) {
                mail.unacked = None;
            }
        }
    }
}

impl Drop for Reader {
    /// The connection ended: a clean session's subscription ends with it; a
    /// persistent one waits for the session's next connection.
    fn drop(&mut self) {
        let Some(mailbox) = self.attached.take() else {
            return;
        };
        let mut mail = mailbox.mail.lock().unwrap();
        if !mail.read_by(&self.notify) {
            return; // another connection took it over
        }
        mail.reader = None;
        if mail.persistent {
            return;
        }
        drop(mail);
        self.forget(&mailbox);
    }
}
