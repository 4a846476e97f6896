use super::Ack;
use slab::Slab;
use tracing::{info, trace};

use crate::protocol::{
    matches, ConnAck, ConnAckProperties, PingResp, PubAck, PubComp, PubRec, PubRel, Publish,
    PublishProperties, SubAck, UnsubAck,
};
use crate::router::{DataRequest, FilterIdx, SubscriptionMeter, Waiters};
use crate::{ConnectionId, Filter, Offset, RouterConfig, Topic};

use crate::segments::{CommitLog, Position};
use crate::Storage;
use std::collections::{HashMap, VecDeque};
use std::io;
use std::time::Instant;

type PubWithProp = (Publish, Option<PublishProperties>);

#[derive(Clone)]
pub struct PublishData {
    pub publish: Publish,
    pub properties: Option<PublishProperties>,
    pub timestamp: Instant,
}

impl From<PubWithProp> for PublishData {
    fn from((publish, properties): PubWithProp) -> Self {
        PublishData {
            publish,
            properties,
            timestamp: Instant::now(),
        }
    }
}

// TODO: remove this from here
impl Storage for PublishData {
    // TODO: calculate size of publish properties as well!
    fn size(&self) -> usize {
        let publish = &self.publish;
        4 + publish.topic.len() + publish.payload.len()
    }
}

/// Stores 'device' data and 'actions' data in native commitlog
/// organized by subscription filter. Device data is replicated
/// while actions data is not
pub struct DataLog {
    pub config: RouterConfig,
    /// Native commitlog data organized by subscription. Contains
    /// device data and actions data logs.
    ///
    /// Device data is replicated while actions data is not.
    /// Also has waiters used to wake connections/replicator tracker
    /// which are caught up with all the data on 'Filter' and waiting
    /// for new data
    pub native: Slab<Data<PublishData>>,
    /// Map of subscription filter name to filter index
    filter_indexes: HashMap<Filter, FilterIdx>,
    retained_publishes: HashMap<Topic, PublishData>,
    /// List of filters associated with a topic
    publish_filters: HashMap<Topic, Vec<FilterIdx>>,
    /// Vigil patch: the filters with a wildcard, the only ones a new topic
    /// must be matched against one by one (an exact filter is looked up).
    wildcard_filters: Vec<(Filter, FilterIdx)>,
    /// Vigil patch: the slots of filters released since nobody read them
    /// (`release`), kept for the same filter's next subscriber.
    released: HashMap<Filter, FilterIdx>,
}

/// Vigil patch: the most topics `DataLog::publish_filters` remembers. Every
/// topic published with a matching filter was kept for the router's life:
/// Vigil publishes each alarm under its equipment's own topics (three per
/// equipment), which `/tenants/#` matches, so a province's engine would
/// come to hold millions of them, and a new wildcard subscription is
/// matched against every topic kept. A topic not kept is matched again
/// (the wildcard filters one by one, the exact one by lookup).
const MAX_CACHED_TOPICS: usize = 16_384;

/// Vigil patch: a filter whose log stays for the router's life, read or
/// not: a lossless one (Vigil's ingest filter) or one made at start. The
/// others are counted in `RouterConfig::filter_logs`.
fn is_permanent(config: &RouterConfig, filter: &str) -> bool {
    config.lossless.contains_key(filter)
        || (config.initialized_filters.as_ref())
            .is_some_and(|filters| filters.iter().any(|f| f == filter))
}

/// Vigil patch: whether a filter can match another topic than itself.
fn is_wildcard(filter: &str) -> bool {
    filter.contains(['+', '#'])
}

/// Vigil patch: whether `filter`'s log takes a publish on `topic`: the
/// filter matches it and none of the filters `RouterConfig::excluded` lists
/// under it does.
fn takes(config: &RouterConfig, filter: &str, topic: &str) -> bool {
    matches(topic, filter)
        && !(config.excluded.get(filter))
            .is_some_and(|excluded| excluded.iter().any(|e| matches(topic, e)))
}

impl DataLog {
    pub fn new(config: RouterConfig) -> io::Result<DataLog> {
        let mut native = Slab::new();
        let mut filter_indexes = HashMap::new();
        let retained_publishes = HashMap::new();
        let publish_filters = HashMap::new();
        let mut wildcard_filters = Vec::new();

        if let Some(warmup_filters) = config.initialized_filters.clone() {
            for filter in warmup_filters {
                let data = Data::new(&filter, &config);

                // Add commitlog to datalog and add datalog index to filter to
                // datalog index map
                let idx = native.insert(data);
                if is_wildcard(&filter) {
                    wildcard_filters.push((filter.clone(), idx));
                }
                filter_indexes.insert(filter, idx);
            }
        }

        Ok(DataLog {
            config,
            native,
            publish_filters,
            filter_indexes,
            retained_publishes,
            wildcard_filters,
            released: HashMap::new(),
        })
    }

    pub fn meter(&mut self, filter: &str) -> Option<&mut SubscriptionMeter> {
        let data = self.native.get_mut(*self.filter_indexes.get(filter)?)?;
        Some(&mut data.meter)
    }

    pub fn waiters(&self, filter: &Filter) -> Option<&Waiters<DataRequest>> {
        self.native
            .get(*self.filter_indexes.get(filter)?)
            .map(|data| &data.waiters)
    }

    pub fn remove_waiters_for_id(
        &mut self,
        id: ConnectionId,
        filter: &Filter,
    ) -> Option<DataRequest> {
        let data = self
            .native
            .get_mut(*self.filter_indexes.get(filter)?)
            .unwrap();
        let waiters = data.waiters.get_mut();

        waiters
            .iter()
            .position(|&(conn_id, _)| conn_id == id)
            .and_then(|index| {
                waiters
                    .swap_remove_back(index)
                    .map(|(_, data_req)| data_req)
            })
    }

    // TODO: Currently returning a Option<Vec> instead of Option<&Vec> due to Rust borrow checker
    // limitation
    pub fn matches(&mut self, topic: &str) -> Option<Vec<usize>> {
        match &self.publish_filters.get(topic) {
            Some(v) => Some(v.to_vec()),
            None => {
                // Vigil patch: the exact filter spelled as the topic, by lookup, and the
                // wildcard filters one by one, instead of matching every filter (with one
                // ack filter per device, each new topic cost a scan of them all).
                let mut v: Vec<usize> = self
                    .wildcard_filters
                    .iter()
                    .filter(|(filter, _)| takes(&self.config, filter, topic))
                    .map(|(_, filter_idx)| *filter_idx)
                    .collect();
                if !is_wildcard(topic) && takes(&self.config, topic, topic) {
                    v.extend(self.filter_indexes.get(topic));
                }

                if !v.is_empty() {
                    // Vigil patch: forget them all at the bound; the topics
                    // in use come back one by one.
                    if self.publish_filters.len() >= MAX_CACHED_TOPICS {
                        self.publish_filters.clear();
                    }
                    self.publish_filters.insert(topic.to_owned(), v.clone());
                }

                Some(v)
            }
        }
    }

    /// Vigil patch: drops the log of `filter` (the caller knows nobody
    /// subscribes to it any more) and forgets the filter, so that no topic
    /// matches it. Returns whether it did: not for a filter it does not
    /// have, nor for a permanent one.
    pub fn release(&mut self, filter: &str) -> bool {
        if is_permanent(&self.config, filter) {
            return false;
        }
        let Some(idx) = self.filter_indexes.remove(filter) else {
            return false;
        };
        self.wildcard_filters.retain(|&(_, i)| i != idx);
        self.publish_filters.retain(|_, filters| {
            filters.retain(|&i| i != idx);
            !filters.is_empty()
        });
        // The slot stays taken, by an empty log nothing matches, until the
        // same filter is used again: an index still held somewhere (a
        // session's messages in flight) must not come to mean another filter.
        if let Some(data) = self.native.get_mut(idx) {
            *data = Data::new(filter, &self.config);
        }
        self.released.insert(filter.to_owned(), idx);
        self.config
            .filter_logs
            .fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
        true
    }

    pub fn next_native_offset(&mut self, filter: &str) -> (FilterIdx, Offset) {
        let publish_filters = &mut self.publish_filters;
        let filter_indexes = &mut self.filter_indexes;

        let (filter_idx, data) = match filter_indexes.get(filter) {
            Some(idx) => (*idx, self.native.get(*idx).unwrap()),
            None => {
                let data = Data::new(filter, &self.config);

                // Add commitlog to datalog and add datalog index to filter to
                // datalog index map
                // Vigil patch: a filter released earlier gets its old slot.
                let idx = match self.released.remove(filter) {
                    Some(idx) => {
                        self.native[idx] = data;
                        idx
                    }
                    None => self.native.insert(data),
                };
                self.filter_indexes.insert(filter.to_owned(), idx);
                if !is_permanent(&self.config, filter) {
                    self.config
                        .filter_logs
                        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                }

                // Match new filter to existing topics and add to publish_filters if it matches
                // Vigil patch: an exact filter can only match the topic spelled the same.
                if is_wildcard(filter) {
                    self.wildcard_filters.push((filter.to_owned(), idx));
                    for (topic, filters) in publish_filters.iter_mut() {
                        if takes(&self.config, filter, topic) {
                            filters.push(idx);
                        }
                    }
                } else if let Some(filters) = publish_filters.get_mut(filter) {
                    if takes(&self.config, filter, filter) {
                        filters.push(idx);
                    }
                }

                (idx, self.native.get(idx).unwrap())
            }
        };

        (filter_idx, data.log.next_offset())
    }

    pub fn native_readv(
        &self,
        filter_idx: FilterIdx,
        offset: Offset,
        len: u64,
    ) -> io::Result<(Position, Vec<(PubWithProp, Offset)>)> {
        // unwrap to get index of `self.native` is fine here, because when a new subscribe packet
        // arrives in `Router::handle_device_payload`, it first calls the function
        // `next_native_offset` which creates a new commitlog if one doesn't exist. So any new
        // reads will definitely happen on a valid filter.
        let data = self.native.get(filter_idx).unwrap();
        let mut o = Vec::new();
        // TODO: `readv` is infallible but its current return type does not
        // reflect that. Consequently, this method is also infallible.
        // Encoding this information is important so that calling function
        // has more information on how this method behaves.
        let next = data.log.readv(offset, len, &mut o)?;

        let now = Instant::now();
        o.retain_mut(|(pubdata, _)| {
            // Keep data if no properties exists, which implies no message expiry!
            let Some(properties) = pubdata.properties.as_mut() else {
                return true;
            };

            // Keep data if there is no message_expiry_interval
            let Some(message_expiry_interval) = properties.message_expiry_interval.as_mut() else {
                return true;
            };

            let time_spent = (now - pubdata.timestamp).as_secs() as u32;

            let is_valid = time_spent < *message_expiry_interval;

            // ignore expired messages
            if is_valid {
                // set message_expiry_interval to (original value - time spent waiting in server)
                // ref: https://docs.oasis-open.org/mqtt/mqtt/v5.0/os/mqtt-v5.0-os.html#_Toc3901112
                *message_expiry_interval -= time_spent;
            }

            is_valid
        });

        // no need to include timestamp when returning
        let o = o
            .into_iter()
            .map(|(pubdata, offset)| ((pubdata.publish, pubdata.properties), offset))
            .collect();

        Ok((next, o))
    }

    pub fn shadow(&mut self, filter: &str) -> Option<PubWithProp> {
        let data = self.native.get_mut(*self.filter_indexes.get(filter)?)?;
        data.log.last().map(|p| (p.publish, p.properties))
    }

    /// This method is called when the subscriber has caught up with the commit log. In which case,
    /// instead of actively checking for commits in each `Router::run_inner` iteration, we instead
    /// wait and only try reading again when new messages have been added to the commit log. This
    /// methods converts a `DataRequest` (which actively reads the commit log in `Router::consume`)
    /// to a `Waiter` (which only reads when notified).
    pub fn park(&mut self, id: ConnectionId, request: DataRequest) {
        // calling unwrap on index here is fine, because only place this function is called is in
        // `Router::consume` method, when the status after reading from commit log of the same
        // filter as `request` is "done", that is, the subscriber has caught up. In other words,
        // there has been atleast 1 call to `native_readv` for the same filter, which means if
        // `native_readv` hasn't paniced, so this won't panic either.
        let data = self.native.get_mut(request.filter_idx).unwrap();
        data.waiters.register(id, request);
    }

    /// Vigil patch: whether a publish on `topic` would go to a full
    /// lossless log (and must wait).
    pub fn is_full_for(&mut self, topic: &[u8]) -> bool {
        // Cheap first: usually no lossless log is full.
        if !self.any_full() {
            return false;
        }
        let Ok(topic) = std::str::from_utf8(topic) else {
            return false;
        };
        let Some(filter_idxs) = self.matches(topic) else {
            return false;
        };
        filter_idxs
            .into_iter()
            .any(|idx| self.native.get(idx).is_some_and(Data::is_full))
    }

    /// Vigil patch: whether any lossless log is full.
    pub fn any_full(&self) -> bool {
        self.config
            .lossless
            .keys()
            .filter_map(|filter| self.filter_indexes.get(filter))
            .any(|&idx| self.native.get(idx).is_some_and(Data::is_full))
    }

    /// Vigil patch: `client_id` no longer reads the log of `filter`.
    pub fn forget_reader(&mut self, filter: &str, client_id: &str) {
        if let Some(&idx) = self.filter_indexes.get(filter) {
            if let Some(data) = self.native.get_mut(idx) {
                data.forget_reader(client_id);
            }
        }
    }

    /// Cleanup a connection from all the waiters
    pub fn clean(&mut self, id: ConnectionId) -> Vec<DataRequest> {
        let mut inflight = Vec::new();
        for (_, data) in self.native.iter_mut() {
            inflight.append(&mut data.waiters.remove(id));
        }

        inflight
    }

    pub fn insert_to_retained_publishes(
        &mut self,
        publish: Publish,
        publish_properties: Option<PublishProperties>,
        topic: Topic,
    ) {
        let pub_with_props = (publish, publish_properties);
        self.retained_publishes.insert(topic, pub_with_props.into());
    }

    pub fn remove_from_retained_publishes(&mut self, topic: Topic) {
        self.retained_publishes.remove(&topic);
    }

    pub fn read_retained_messages(&mut self, filter: &str) -> Vec<PubWithProp> {
        trace!(info = "reading retain msg", filter = &filter);
        let now = Instant::now();

        // discard expired retained messages
        self.retained_publishes.retain(|_, pubdata| {
            // Keep data if no properties exists, which implies no message expiry!
            let Some(properties) = pubdata.properties.as_mut() else {
                return true;
            };

            // Keep data if there is no message_expiry_interval
            let Some(message_expiry_interval) = properties.message_expiry_interval.as_mut() else {
                return true;
            };

            let time_spent = (now - pubdata.timestamp).as_secs() as u32;

            let is_valid = time_spent < *message_expiry_interval;

            // ignore expired messages
            if is_valid {
                // set message_expiry_interval to (original value - time spent waiting in server)
                // ref: https://docs.oasis-open.org/mqtt/mqtt/v5.0/os/mqtt-v5.0-os.html#_Toc3901112
                *message_expiry_interval -= time_spent;
            }

            is_valid
        });

        // no need to include timestamp when returning
        self.retained_publishes
            .iter()
            .filter(|(topic, _)| matches(topic, filter))
            .map(|(_, p)| (p.publish.clone(), p.properties.clone()))
            .collect()
    }
}

pub struct Data<T> {
    filter: Filter,
    pub log: CommitLog<T>,
    pub waiters: Waiters<DataRequest>,
    meter: SubscriptionMeter,
    /// Vigil patch: for a lossless log, each subscriber's next offset to
    /// read, by client id (a persistent session keeps its place while away).
    readers: Option<HashMap<String, u64>>,
}

impl<T> Data<T>
where
    T: Storage + Clone,
{
    pub fn new(filter: &str, router_config: &RouterConfig) -> Data<T> {
        let mut max_segment_size = router_config.max_segment_size;
        let mut max_mem_segments = router_config.max_segment_count;

        // Override segment config for selected filter
        if let Some(config) = &router_config.custom_segment {
            for (f, segment_config) in config {
                if matches(filter, f) {
                    info!("Overriding segment config for filter: {}", filter);
                    max_segment_size = segment_config.max_segment_size;
                    max_mem_segments = segment_config.max_segment_count;
                }
            }
        }

        let lossless = router_config.lossless.get(filter);
        if let Some(config) = lossless {
            max_segment_size = config.max_segment_size;
            max_mem_segments = config.max_segment_count;
        }

        // max_segment_size: usize, max_mem_segments: usize
        let log = CommitLog::new(max_segment_size, max_mem_segments).unwrap();

        let waiters = Waiters::with_capacity(10);
        let metrics = SubscriptionMeter::default();
        Data {
            filter: filter.to_owned(),
            log,
            waiters,
            meter: metrics,
            readers: lossless.map(|_| HashMap::new()),
        }
    }

    /// Vigil patch: the oldest offset a subscriber of this lossless log has
    /// not read (`None` for other logs).
    fn oldest_unread(&self) -> Option<u64> {
        self.readers.as_ref()?.values().min().copied()
    }

    /// Vigil patch: a lossless log with no room for the next entry.
    pub fn is_full(&self) -> bool {
        self.oldest_unread()
            .is_some_and(|oldest| self.log.would_drop(oldest))
    }

    /// Vigil patch: where `client_id` reads next in this lossless log.
    pub fn note_reader(&mut self, client_id: &str, cursor: Offset) {
        if let Some(readers) = self.readers.as_mut() {
            match readers.get_mut(client_id) {
                Some(next) => *next = cursor.1,
                None => {
                    readers.insert(client_id.to_owned(), cursor.1);
                }
            }
        }
    }

    /// Vigil patch: `client_id` no longer reads this log.
    pub fn forget_reader(&mut self, client_id: &str) {
        if let Some(readers) = self.readers.as_mut() {
            readers.remove(client_id);
        }
    }

    /// Writes to all the filters that are mapped to this publish topic
    /// and wakes up consumers that are matching this topic (if they exist)
    pub fn append(
        &mut self,
        item: T,
        notifications: &mut VecDeque<(ConnectionId, DataRequest)>,
    ) -> (Offset, &Filter) {
        let size = item.size();
        let offset = self.log.append_keeping(item, self.oldest_unread());
        if let Some(mut parked) = self.waiters.take() {
            notifications.append(&mut parked);
        }

        self.meter.count += 1;
        self.meter.total_size += size;

        (offset, &self.filter)
    }
}

/// Acks log for a subscription
#[derive(Debug)]
pub struct AckLog {
    // Committed acks per connection. First pkid, last pkid, data
    committed: VecDeque<Ack>,
    // Recorded qos 2 publishes
    recorded: VecDeque<(Publish, Option<PublishProperties>)>,
}

impl AckLog {
    /// New log
    pub fn new() -> AckLog {
        AckLog {
            // Vigil patch: small at first, grown on demand (100 of each
            // was ~45 KiB per connection).
            committed: VecDeque::with_capacity(crate::router::INITIAL_CHANNEL_CAPACITY),
            recorded: VecDeque::new(),
        }
    }

    pub fn connack(&mut self, id: ConnectionId, ack: ConnAck, props: Option<ConnAckProperties>) {
        let ack = Ack::ConnAck(id, ack, props);
        self.committed.push_back(ack);
    }

    pub fn suback(&mut self, ack: SubAck) {
        let ack = Ack::SubAck(ack);
        self.committed.push_back(ack);
    }

    pub fn puback(&mut self, ack: PubAck) {
        let ack = Ack::PubAck(ack);
        self.committed.push_back(ack);
    }

    pub fn pubrec(&mut self, publish: Publish, props: Option<PublishProperties>, ack: PubRec) {
        let ack = Ack::PubRec(ack);
        self.recorded.push_back((publish, props));
        self.committed.push_back(ack);
    }

    pub fn pubrel(&mut self, ack: PubRel) {
        let ack = Ack::PubRel(ack);
        self.committed.push_back(ack);
    }

    pub fn pubcomp(&mut self, ack: PubComp) -> Option<(Publish, Option<PublishProperties>)> {
        let ack = Ack::PubComp(ack);
        self.committed.push_back(ack);
        self.recorded.pop_front()
    }

    pub fn pingresp(&mut self, ack: PingResp) {
        let ack = Ack::PingResp(ack);
        self.committed.push_back(ack);
    }

    pub fn unsuback(&mut self, ack: UnsubAck) {
        let ack = Ack::UnsubAck(ack);
        self.committed.push_back(ack);
    }

    pub fn readv(&mut self) -> &mut VecDeque<Ack> {
        &mut self.committed
    }
}

#[cfg(test)]
mod test {
    use super::DataLog;
    use crate::router::shared_subs::Strategy;
    use crate::RouterConfig;

    #[test]
    fn publish_filters_updating_correctly_on_new_topic_subscription() {
        let config = RouterConfig {
            max_segment_size: 1024,
            max_connections: 10,
            max_segment_count: 10,
            max_outgoing_packet_count: 1024,
            custom_segment: None,
            initialized_filters: None,
            shared_subscriptions_strategy: Strategy::RoundRobin,
            // Vigil patch: the fields Vigil's changes added.
            ..RouterConfig::default()
        };
        let mut data = DataLog::new(config).unwrap();
        data.next_native_offset("topic/a");
        data.matches("topic/a");

        data.next_native_offset("topic/+");

        assert_eq!(data.publish_filters.get("topic/a").unwrap().len(), 2);
    }

    #[test]
    fn publish_filters_updating_correctly_on_new_publish() {
        let config = RouterConfig {
            max_segment_size: 1024,
            max_connections: 10,
            max_segment_count: 10,
            max_outgoing_packet_count: 1024,
            custom_segment: None,
            initialized_filters: None,
            shared_subscriptions_strategy: Strategy::RoundRobin,
            // Vigil patch: the fields Vigil's changes added.
            ..RouterConfig::default()
        };
        let mut data = DataLog::new(config).unwrap();
        data.next_native_offset("+/+");

        data.matches("topic/a");

        assert_eq!(data.publish_filters.get("topic/a").unwrap().len(), 1);
    }

    /// Vigil patch: a province's alarm topics (three per equipment, all
    /// matched by the ingest filter) do not pile up in the router, and a
    /// topic it forgot still finds every filter, old and new.
    #[test]
    fn topics_kept_are_bounded_and_a_forgotten_topic_still_finds_its_filters() {
        let config = RouterConfig {
            max_segment_size: 1024,
            max_segment_count: 10,
            ..RouterConfig::default()
        };
        let mut data = DataLog::new(config).unwrap();
        let (ingest, _) = data.next_native_offset("/tenants/#");
        let (city, _) = data.next_native_offset("/tenants/r440700/v1/alarms/#");
        let topic = |i: usize| format!("/tenants/r440700/v1/alarms/elevator/EQ{i:012}");
        for i in 0..3 * super::MAX_CACHED_TOPICS {
            assert_eq!(data.matches(&topic(i)), Some(vec![ingest, city]));
            assert!(data.publish_filters.len() <= super::MAX_CACHED_TOPICS);
        }
        // Filters added since, one exact and one wildcard: for a topic
        // still kept and for one forgotten long ago.
        let (exact, _) = data.next_native_offset(&topic(7));
        let (elevators, _) = data.next_native_offset("/tenants/+/v1/alarms/elevator/+");
        let last = topic(3 * super::MAX_CACHED_TOPICS - 1);
        assert!(data.publish_filters.contains_key(&last));
        assert!(!data.publish_filters.contains_key(&topic(7)));
        assert_eq!(data.matches(&last), Some(vec![ingest, city, elevators]));
        assert_eq!(data.matches(&topic(7)), Some(vec![ingest, city, elevators, exact]));
        assert_eq!(data.matches("/elsewhere/a"), Some(vec![]));
    }

    /// Vigil patch: a released filter's log is gone and no topic matches
    /// it; used again, it gets its old slot (and another filter a new one).
    #[test]
    fn a_released_filter_matches_nothing_and_comes_back_in_its_own_slot() {
        use std::sync::atomic::Ordering;
        let config = RouterConfig {
            max_segment_size: 1024,
            max_segment_count: 10,
            ..RouterConfig::default()
        };
        let logs = std::sync::Arc::clone(&config.filter_logs);
        let mut data = DataLog::new(config).unwrap();
        let topic = "/tenants/r440700/v1/alarms/elevator/EQ1";
        let (city, _) = data.next_native_offset("/tenants/r440700/v1/alarms/#");
        let (exact, _) = data.next_native_offset(topic);
        assert_eq!(logs.load(Ordering::Relaxed), 2);
        assert_eq!(data.matches(topic), Some(vec![city, exact]));

        assert!(data.release("/tenants/r440700/v1/alarms/#"));
        assert!(!data.release("/tenants/r440700/v1/alarms/#"));
        assert_eq!(logs.load(Ordering::Relaxed), 1);
        assert_eq!(data.matches(topic), Some(vec![exact]));
        assert!(data.release(topic));
        assert_eq!(data.matches(topic), Some(vec![]));
        assert_eq!(logs.load(Ordering::Relaxed), 0);

        let (other, _) = data.next_native_offset("/tenants/r440100/v1/alarms/#");
        assert!(other != city && other != exact);
        let (again, _) = data.next_native_offset("/tenants/r440700/v1/alarms/#");
        assert_eq!(again, city);
        assert_eq!(data.matches(topic), Some(vec![again]));
        assert_eq!(logs.load(Ordering::Relaxed), 2);
    }

    /// Vigil patch: a filter's excluded topics do not go to its log, whether
    /// the topic was seen before the filter or after; other filters that
    /// match them still get them, and other topics still go to it.
    #[test]
    fn a_filter_does_not_take_the_topics_it_excludes() {
        let config = RouterConfig {
            max_segment_size: 1024,
            max_segment_count: 10,
            excluded: std::collections::HashMap::from([(
                "/tenants/#".to_owned(),
                vec!["/tenants/+/v1/alarms/#".to_owned()],
            )]),
            ..RouterConfig::default()
        };
        let mut data = DataLog::new(config).unwrap();
        let alarm = "/tenants/r440700/v1/alarms/elevator/EQ1";
        let early = "/tenants/r440703/v1/alarms/elevator/EQ1";
        let reading = "/tenants/EL1/v1/elevator";
        let (city, _) = data.next_native_offset("/tenants/+/v1/alarms/#");
        assert_eq!(data.matches(early), Some(vec![city]));

        let (ingest, _) = data.next_native_offset("/tenants/#");
        assert_eq!(data.matches(early), Some(vec![city]), "kept before the filter");
        assert_eq!(data.matches(alarm), Some(vec![city]), "first seen after it");
        assert_eq!(data.matches(reading), Some(vec![ingest]));
        let (exact, _) = data.next_native_offset(alarm);
        assert_eq!(data.matches(alarm), Some(vec![city, exact]));
    }

    //     #[test]
    //     fn appends_are_written_to_correct_commitlog() {
    //         pretty_env_logger::init();
    //         let config = RouterConfig {
    //             instant_ack: true,
    //             max_segment_size: 1024,
    //             max_connections: 10,
    //             max_mem_segments: 10,
    //             max_disk_segments: 0,
    //             max_read_len: 1024,
    //             log_dir: None,
    //             dynamic_log: true,
    //         };

    //         let mut data = DataLog::new(config).unwrap();
    //         data.next_native_offset("/devices/2321/actions");
    //         for i in 0..2 {
    //             let publish = Publish::new("/devices/2321/events/imu/jsonarray", QoS::AtLeastOnce, vec![1, 2, 3]);
    //             let v = data.native_append(publish);
    //             dbg!(v);
    //         }

    //         for i in 0..2 {
    //             let publish = Publish::new("/devices/2321/actions", QoS::AtLeastOnce, vec![1, 2, 3]);
    //             let v = data.native_append(publish);
    //             dbg!(v);
    //         }
    //     }
}
