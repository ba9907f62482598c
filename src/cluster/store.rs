//! The cluster thread: the only code that talks to Redis (blocking client, short timeouts).

use super::{
    least_loaded, ws_url, ClusterConfig, ClusterJob, ClusterThread, NodeInfo, PlaceReply,
    Placement, View, NODE_PREFIX, ROOM_PREFIX,
};
use crate::channel::Sender;
use crate::stats::{Counted, WorkerStats};
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Every Redis call gives up after this; the thread never hangs on a dead server.
const IO_TIMEOUT: Duration = Duration::from_millis(800);
/// Reconnect backoff: doubles from the first to the last value while Redis stays away.
const BACKOFF_FIRST: Duration = Duration::from_millis(200);
const BACKOFF_MAX: Duration = Duration::from_secs(2);
/// Leases renewed per script call.
const RENEW_CHUNK: usize = 500;

/// Keeps a live owner's lease (its record has more than ARGV[5] ms left), else gives the room
/// to ARGV[1]. ARGV[4] is this node's id while it drains (its own lease does not count), else
/// empty.
const PLACE: &str = r"
local owner = redis.call('GET', KEYS[1])
if owner and owner ~= ARGV[4] and redis.call('PTTL', ARGV[3] .. owner) > tonumber(ARGV[5]) then
  return owner
end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return ARGV[1]
";

/// Renews (or re-creates, after Redis lost its data) this node's leases; returns the keys
/// another node holds.
const RENEW: &str = r"
local lost = {}
for _, k in ipairs(KEYS) do
  local v = redis.call('GET', k)
  if (not v) or v == ARGV[1] then
    redis.call('SET', k, ARGV[1], 'PX', ARGV[2])
  else
    table.insert(lost, k)
  end
end
return lost
";

/// Deletes a lease only if this node holds it.
const RELEASE: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
";

/// Starts the cluster thread. `replies` wakes the signaling loop with placement answers.
pub fn spawn(
    cfg: ClusterConfig,
    stats: Vec<Arc<WorkerStats>>,
    draining: Arc<AtomicBool>,
    replies: Sender<PlaceReply>,
) -> std::io::Result<(ClusterThread, Arc<Mutex<View>>)> {
    let client = redis::Client::open(cfg.redis_url.as_str()).map_err(|e| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!("SFU_REDIS_URL is not a Redis URL (redis://host:port): {e}"),
        )
    })?;
    let view = Arc::new(Mutex::new(View::default()));
    let (jobs_tx, jobs_rx) = std::sync::mpsc::channel();
    let mut node = Node {
        cfg,
        client,
        con: None,
        retry_at: Instant::now(),
        backoff: BACKOFF_FIRST,
        stats,
        draining,
        replies,
        shared: view.clone(),
        view: View::default(),
        local: HashSet::new(),
        cpu: CpuMeter::new(),
        cpu_share: 0.0,
        scripts: Scripts {
            place: redis::Script::new(PLACE),
            renew: redis::Script::new(RENEW),
            release: redis::Script::new(RELEASE),
        },
    };
    let thread = std::thread::Builder::new()
        .name("cluster".into())
        .spawn(move || node.run(jobs_rx))?;
    Ok((
        ClusterThread {
            jobs: jobs_tx,
            thread,
        },
        view,
    ))
}

struct Scripts {
    place: redis::Script,
    renew: redis::Script,
    release: redis::Script,
}

struct Node {
    cfg: ClusterConfig,
    client: redis::Client,
    con: Option<redis::Connection>,
    /// While disconnected: no attempt before this.
    retry_at: Instant,
    backoff: Duration,
    stats: Vec<Arc<WorkerStats>>,
    draining: Arc<AtomicBool>,
    replies: Sender<PlaceReply>,
    /// What the signaling thread reads.
    shared: Arc<Mutex<View>>,
    /// This thread's copy (placements bump it between heartbeats).
    view: View,
    /// Rooms hosted here, whose leases this node renews.
    local: HashSet<Arc<str>>,
    cpu: CpuMeter,
    /// The CPU share measured at the last heartbeat.
    cpu_share: f32,
    scripts: Scripts,
}

impl Node {
    fn run(&mut self, jobs: Receiver<ClusterJob>) {
        tracing::info!(node = %self.cfg.node_id, url = %self.cfg.public_url, "joining the cluster");
        let mut next_beat = Instant::now();
        loop {
            let now = Instant::now();
            if now >= next_beat {
                self.beat();
                next_beat = now + self.cfg.heartbeat;
            }
            match jobs.recv_timeout(next_beat.saturating_duration_since(Instant::now())) {
                Ok(ClusterJob::Place {
                    conn,
                    req_id,
                    room_id,
                }) => {
                    let placement = self.place(&room_id);
                    let reply = PlaceReply {
                        conn,
                        req_id,
                        room_id,
                        placement,
                    };
                    if self.replies.send(reply).is_err() {
                        break;
                    }
                }
                Ok(ClusterJob::RoomOpened(room)) => {
                    self.local.insert(room);
                }
                Ok(ClusterJob::RoomClosed(room)) => {
                    self.local.remove(&room);
                    let key = room_key(&room);
                    self.with_redis(|s, con| s.release(con, &key));
                }
                Ok(ClusterJob::Stop) | Err(RecvTimeoutError::Disconnected) => break,
                Err(RecvTimeoutError::Timeout) => {}
            }
        }
        self.deregister();
    }

    /// Runs `f` on the connection (connecting first if the backoff allows); None if Redis is
    /// unreachable or the call failed (the connection is then dropped and retried later).
    fn with_redis<T>(
        &mut self,
        f: impl FnOnce(&Self, &mut redis::Connection) -> redis::RedisResult<T>,
    ) -> Option<T> {
        if self.con.is_none() {
            let now = Instant::now();
            if now < self.retry_at {
                return None;
            }
            match self.connect() {
                Ok(con) => {
                    tracing::info!("connected to Redis");
                    self.con = Some(con);
                    self.backoff = BACKOFF_FIRST;
                }
                Err(e) => {
                    if self.backoff == BACKOFF_FIRST {
                        tracing::warn!(error = %e, "Redis unreachable: this node keeps its rooms, refuses new ones, and retries");
                    }
                    self.retry_at = now + self.backoff;
                    self.backoff = (self.backoff * 2).min(BACKOFF_MAX);
                    self.mark_disconnected();
                    return None;
                }
            }
        }
        let mut con = self.con.take()?;
        match f(self, &mut con) {
            Ok(v) => {
                self.con = Some(con);
                Some(v)
            }
            Err(e) => {
                tracing::warn!(error = %e, "Redis call failed; reconnecting");
                self.retry_at = Instant::now();
                self.backoff = BACKOFF_FIRST;
                self.mark_disconnected();
                None
            }
        }
    }

    fn connect(&self) -> redis::RedisResult<redis::Connection> {
        let con = self.client.get_connection_with_timeout(IO_TIMEOUT)?;
        con.set_read_timeout(Some(IO_TIMEOUT))?;
        con.set_write_timeout(Some(IO_TIMEOUT))?;
        Ok(con)
    }

    fn mark_disconnected(&mut self) {
        self.view.connected = false;
        if let Ok(mut v) = self.shared.lock() {
            v.connected = false;
        }
    }

    /// This node's record as of now (CPU as of the last heartbeat).
    fn record(&self) -> NodeInfo {
        let sum = |c: Counted| -> usize { self.stats.iter().map(|s| s.get(c)).sum() };
        NodeInfo {
            id: self.cfg.node_id.clone(),
            url: self.cfg.public_url.clone(),
            rooms: sum(Counted::Room).max(self.local.len()),
            peers: sum(Counted::Peer),
            consumers: sum(Counted::Consumer),
            cpu: self.cpu_share,
            draining: self.draining.load(Ordering::Relaxed),
        }
    }

    /// Writes the record, renews the leases and reads everything back.
    fn beat(&mut self) {
        self.cpu_share = self.cpu.sample();
        let me = self.record();
        let ttl = self.cfg.ttl.as_millis() as u64;
        let rooms: Vec<String> = self.local.iter().map(|r| room_key(r)).collect();
        let read = self.with_redis(|s, con| {
            let record = serde_json::to_string(&me).unwrap_or_default();
            redis::cmd("SET")
                .arg(format!("{NODE_PREFIX}{}", me.id))
                .arg(record)
                .arg("PX")
                .arg(ttl)
                .query::<()>(con)?;
            let mut lost: Vec<String> = Vec::new();
            for chunk in rooms.chunks(RENEW_CHUNK) {
                let mut call = s.scripts.renew.prepare_invoke();
                for key in chunk {
                    call.key(key);
                }
                lost.extend(call.arg(&me.id).arg(ttl).invoke::<Vec<String>>(con)?);
            }
            Ok((lost, read_view(con, s.cfg.stale_below())?))
        });
        let Some((lost, mut view)) = read else {
            return;
        };
        for key in lost {
            tracing::warn!(room = %&key[ROOM_PREFIX.len()..], "another node holds the lease of a room hosted here (Redis lost its data?); new joins go there");
        }
        // Our own record as of now, even if Redis returned the one before.
        view.nodes.retain(|n| n.id != me.id);
        view.nodes.push(me);
        view.nodes.sort_by(|a, b| a.id.cmp(&b.id));
        self.view = view;
        if let Ok(mut v) = self.shared.lock() {
            *v = self.view.clone();
        }
    }

    fn place(&mut self, room: &str) -> Placement {
        let draining = self.draining.load(Ordering::Relaxed);
        if self.con.is_none() || !self.view.connected {
            self.beat();
        }
        if !self.view.connected {
            return Placement::Unavailable(
                "the cluster store (Redis) is unreachable, so new rooms cannot be placed; \
                 try again in a few seconds"
                    .into(),
            );
        }
        // Our own draining flag is current; the rest is as of the last heartbeat (plus the
        // rooms placed since).
        let me = self.cfg.node_id.clone();
        if let Some(n) = self.view.nodes.iter_mut().find(|n| n.id == me) {
            n.draining = draining;
        }
        let Some(candidate) = least_loaded(&self.view.nodes, &me).map(|n| n.id.clone()) else {
            return Placement::Unavailable(
                "every node of the cluster is draining; no node takes new rooms now".into(),
            );
        };
        let key = room_key(room);
        let ttl = self.cfg.ttl.as_millis() as u64;
        let self_if_draining = if draining { me.as_str() } else { "" };
        let owner = self.with_redis(|s, con| {
            s.scripts
                .place
                .key(&key)
                .arg(&candidate)
                .arg(ttl)
                .arg(NODE_PREFIX)
                .arg(self_if_draining)
                .arg(s.cfg.stale_below().as_millis() as u64)
                .invoke::<String>(con)
        });
        let Some(owner) = owner else {
            return Placement::Unavailable(
                "the cluster store (Redis) did not answer, so the room could not be placed; \
                 try again in a few seconds"
                    .into(),
            );
        };
        if owner == candidate {
            if let Some(n) = self.view.nodes.iter_mut().find(|n| n.id == owner) {
                n.rooms += 1;
            }
        }
        self.view.rooms.insert(room.to_string(), owner.clone());
        if owner == me {
            return Placement::Local;
        }
        if self.view.node(&owner).is_none() {
            self.beat();
        }
        match self.view.node(&owner) {
            Some(n) => Placement::Moved {
                node: owner,
                ws_url: ws_url(&n.url),
            },
            None => Placement::Unavailable(format!(
                "the room lives on node {owner}, which is not answering; try again in a few seconds"
            )),
        }
    }

    /// Deletes the lease `key` if this node holds it.
    fn release(&self, con: &mut redis::Connection, key: &str) -> redis::RedisResult<i64> {
        self.scripts
            .release
            .key(key)
            .arg(&self.cfg.node_id)
            .invoke(con)
    }

    /// The node leaves at once: its record and its leases are deleted.
    fn deregister(&mut self) {
        let rooms: Vec<String> = self.local.iter().map(|r| room_key(r)).collect();
        let key = format!("{NODE_PREFIX}{}", self.cfg.node_id);
        let done = self.with_redis(|s, con| {
            for room in &rooms {
                s.release(con, room)?;
            }
            redis::cmd("DEL").arg(&key).query::<()>(con)
        });
        if done.is_some() {
            tracing::info!(node = %self.cfg.node_id, "left the cluster");
        }
    }
}

fn room_key(room: &str) -> String {
    format!("{ROOM_PREFIX}{room}")
}

/// Every live node record (not stale, see [`ClusterConfig::stale_below`]) and every room
/// lease (SCAN, then MGET in chunks).
fn read_view(con: &mut redis::Connection, stale_below: Duration) -> redis::RedisResult<View> {
    let node_values = scan_values(con, NODE_PREFIX)?;
    let mut pipe = redis::pipe();
    for (key, _) in &node_values {
        pipe.cmd("PTTL").arg(key);
    }
    let left: Vec<i64> = if node_values.is_empty() {
        Vec::new()
    } else {
        pipe.query(con)?
    };
    let stale_below = stale_below.as_millis() as i64;
    let mut nodes: Vec<NodeInfo> = node_values
        .into_iter()
        .zip(left)
        .filter(|(_, ms)| *ms > stale_below)
        .filter_map(|((_, v), _)| serde_json::from_str(&v).ok())
        .collect();
    nodes.sort_by(|a, b| a.id.cmp(&b.id));
    let rooms: HashMap<String, String> = scan_values(con, ROOM_PREFIX)?
        .into_iter()
        .map(|(k, v)| (k[ROOM_PREFIX.len()..].to_string(), v))
        .collect();
    Ok(View {
        connected: true,
        nodes,
        rooms,
    })
}

fn scan_values(
    con: &mut redis::Connection,
    prefix: &str,
) -> redis::RedisResult<Vec<(String, String)>> {
    let keys: Vec<String> = redis::cmd("SCAN")
        .cursor_arg(0)
        .arg("MATCH")
        .arg(format!("{prefix}*"))
        .arg("COUNT")
        .arg(1000)
        .clone()
        .iter::<String>(con)?
        .collect();
    let mut out = Vec::with_capacity(keys.len());
    for chunk in keys.chunks(RENEW_CHUNK) {
        let values: Vec<Option<String>> = redis::cmd("MGET").arg(chunk).query(con)?;
        out.extend(
            chunk
                .iter()
                .zip(values)
                .filter_map(|(k, v)| v.map(|v| (k.clone(), v))),
        );
    }
    Ok(out)
}

/// The process's CPU use between two samples, as a share of all cores (from /proc/self/stat).
struct CpuMeter {
    last: Option<(Instant, u64)>,
}

impl CpuMeter {
    fn new() -> Self {
        Self { last: None }
    }

    fn sample(&mut self) -> f32 {
        let Some(ticks) = process_cpu_ticks() else {
            return 0.0;
        };
        let now = Instant::now();
        let share = match self.last {
            Some((t, before)) => {
                // SAFETY: sysconf only reads a configuration value.
                let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
                let secs = now.duration_since(t).as_secs_f64();
                let cores = crate::config::num_cores().max(1) as f64;
                if secs > 0.0 {
                    (ticks.saturating_sub(before) as f64 / hz / secs / cores) as f32
                } else {
                    0.0
                }
            }
            None => 0.0,
        };
        self.last = Some((now, ticks));
        share.clamp(0.0, 1.0)
    }
}

/// utime + stime of this process, in clock ticks.
fn process_cpu_ticks() -> Option<u64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the command name (which may contain spaces): state is the first.
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace().skip(11);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(utime + stime)
}
