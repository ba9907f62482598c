//! Test-only views into a worker's routers (the tests' oracle for ownership and counts).

use super::core::WorkerCore;
use super::env::Env;
use super::producer::Producer;
use super::router::Router;
use super::PKey;

pub trait Peek {
    fn find_producer(&self, key: PKey) -> Option<&Producer>;
    /// Producer `key` of any room (panics if there is none).
    fn producer(&self, key: PKey) -> &Producer {
        self.find_producer(key)
            .unwrap_or_else(|| panic!("no producer {key}"))
    }
    fn all_producers(&self) -> Vec<(PKey, &Producer)>;
    fn producers_len(&self) -> usize {
        self.all_producers().len()
    }
    fn transports_len(&self) -> usize;
    fn consumers_len(&self) -> usize;
    /// Runs `f` on the router owning producer `key`.
    fn in_router_of<R>(&mut self, key: PKey, f: impl FnOnce(&mut Router, &mut Env) -> R) -> R;
}

impl Peek for WorkerCore {
    fn find_producer(&self, key: PKey) -> Option<&Producer> {
        self.routers.values().find_map(|r| r.producers.get(&key))
    }

    fn all_producers(&self) -> Vec<(PKey, &Producer)> {
        self.routers
            .values()
            .flat_map(|r| r.producers.iter().map(|(k, p)| (*k, p)))
            .collect()
    }

    fn transports_len(&self) -> usize {
        self.routers.values().map(|r| r.transports.len()).sum()
    }

    fn consumers_len(&self) -> usize {
        self.routers.values().map(|r| r.consumers.len()).sum()
    }

    fn in_router_of<R>(&mut self, key: PKey, f: impl FnOnce(&mut Router, &mut Env) -> R) -> R {
        let room = self.env.index.producers[&key].clone();
        let router = self.routers.get_mut(&room).expect("the producer's room");
        f(router, &mut self.env)
    }
}
