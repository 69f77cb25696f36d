//! A running simulated cluster: one loopback listener per PD member and per store status address,
//! and a task that steps the simulation in real time multiplied by a speed factor. Killing a store
//! or a PD member closes its listener (open keep-alive connections are shut down too), so clients see
//! refused connections as they would from a dead process. A further listener serves the control API
//! ([`crate::control`]) through which faults are injected at run time.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use axum::Router;
use tokio::net::TcpListener;
use tokio::sync::{Mutex as AsyncMutex, oneshot};
use tokio::task::JoinHandle;

use crate::api;
use crate::faults::{Fault, FaultId};
use crate::sim::{ClusterSpec, Simulation, TICK_MS};

/// Real-time interval between stepper wake-ups.
const STEP_INTERVAL: Duration = Duration::from_millis(10);
/// Upper bound of ticks run per wake-up, so a stalled process does not lock the model for long.
const MAX_TICKS_PER_WAKE: u64 = 10_000;

/// One HTTP listener that can be stopped and started again on the same address.
struct Listener {
    addr: SocketAddr,
    router: Router,
    running: Option<(oneshot::Sender<()>, JoinHandle<()>)>,
}

impl Listener {
    async fn bind(addr: SocketAddr, router: Router) -> Result<Self> {
        let mut listener = Listener { addr, router, running: None };
        listener.start().await?;
        Ok(listener)
    }

    async fn start(&mut self) -> Result<()> {
        if self.running.is_some() {
            return Ok(());
        }
        let tcp = TcpListener::bind(self.addr).await.with_context(|| format!("binding {}", self.addr))?;
        self.addr = tcp.local_addr()?;
        let (tx, rx) = oneshot::channel::<()>();
        let router = self.router.clone();
        let task = tokio::spawn(async move {
            let shutdown = async move {
                let _ = rx.await;
            };
            if let Err(e) = axum::serve(tcp, router).with_graceful_shutdown(shutdown).await {
                tracing::warn!(error = %e, "listener stopped with an error");
            }
        });
        self.running = Some((tx, task));
        Ok(())
    }

    async fn stop(&mut self) {
        if let Some((tx, task)) = self.running.take() {
            let _ = tx.send(());
            // Graceful shutdown closes idle connections; a request in flight gets a short grace.
            let abort = task.abort_handle();
            if tokio::time::timeout(Duration::from_secs(1), task).await.is_err() {
                abort.abort();
            }
        }
    }
}

/// The name under which a client configures the cluster's PD API (`[endpoints.pd]` in the operator's
/// configuration, `endpoint = "pd"` in its grants).
pub const PD_ENDPOINT: &str = "pd";

/// The subject plugin that operates this cluster (the built-in TiKV adapter), for a host that
/// runs the simulator without being told which subject to monitor.
pub const SUBJECT_PLUGIN: &str = "tikv";

/// An HTTP endpoint the cluster serves, described without any client's types: a client configures
/// an endpoint `name` with these base URLs (tried in order).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServedEndpoint {
    /// The endpoint's name, as a client's configuration and grants refer to it.
    pub name: String,
    /// Base URLs (`http://127.0.0.1:port`), one per serving process.
    pub urls: Vec<String>,
}

/// An HTTP access a client of the cluster (such as a subject plugin) needs: to a named endpoint of
/// [`SimCluster::endpoints`] or to an origin pattern, with these methods and path patterns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NeededAccess {
    /// Name of a served endpoint; exclusive with `url`.
    pub endpoint: Option<String>,
    /// Origin pattern such as `http://127.0.0.1:*`; exclusive with `endpoint`.
    pub url: Option<String>,
    /// HTTP methods (`GET`, `POST`, …).
    pub methods: Vec<String>,
    /// Path patterns, such as `/pd/api/v1/**`.
    pub paths: Vec<String>,
}

/// A simulated cluster serving PD's API and the stores' status ports on loopback.
pub struct SimCluster {
    sim: Arc<Mutex<Simulation>>,
    members: AsyncMutex<Vec<Listener>>,
    stores: AsyncMutex<BTreeMap<u64, Listener>>,
    control: AsyncMutex<Option<Listener>>,
    control_url: OnceLock<String>,
    speed: f64,
    stepper: Mutex<Option<JoinHandle<()>>>,
}

impl SimCluster {
    /// Builds the cluster from `spec`, binds every listener on `127.0.0.1:0`, and steps the
    /// simulation at `speed` times real time (`0.0` leaves stepping to [`SimCluster::step`]).
    pub async fn start(spec: ClusterSpec, speed: f64) -> Result<Arc<SimCluster>> {
        let sim = Arc::new(Mutex::new(Simulation::new(spec)));
        let loopback: SocketAddr = ([127, 0, 0, 1], 0).into();
        let member_count = lock(&sim).members.len();
        let mut members = Vec::with_capacity(member_count);
        for i in 0..member_count {
            let listener = Listener::bind(loopback, api::pd::router(sim.clone(), i)).await?;
            lock(&sim).set_client_url(i, format!("http://{}", listener.addr));
            members.push(listener);
        }
        let store_ids: Vec<u64> = lock(&sim).stores.iter().map(|s| s.id).collect();
        let mut stores = BTreeMap::new();
        for id in store_ids {
            let listener = Listener::bind(loopback, api::status::router(sim.clone(), id)).await?;
            lock(&sim).set_status_address(id, listener.addr.to_string());
            stores.insert(id, listener);
        }
        let stepper = (speed > 0.0).then(|| tokio::spawn(step_loop(sim.clone(), speed)));
        let cluster = Arc::new(SimCluster {
            sim,
            members: AsyncMutex::new(members),
            stores: AsyncMutex::new(stores),
            control: AsyncMutex::new(None),
            control_url: OnceLock::new(),
            speed,
            stepper: Mutex::new(stepper),
        });
        let control = Listener::bind(loopback, crate::control::router(Arc::downgrade(&cluster))).await?;
        let _ = cluster.control_url.set(format!("http://{}", control.addr));
        *cluster.control.lock().await = Some(control);
        Ok(cluster)
    }

    /// Base URL (`http://127.0.0.1:port`) of the control API.
    pub fn control_url(&self) -> String {
        self.control_url.get().cloned().unwrap_or_default()
    }

    /// Simulated time per real time; `0` when stepped by hand.
    pub fn speed(&self) -> f64 {
        self.speed
    }

    /// The PD client URLs (`http://127.0.0.1:port`), one per member, in member order.
    pub fn pd_urls(&self) -> Vec<String> {
        lock(&self.sim).members.iter().map(|m| m.client_url.clone()).collect()
    }

    /// The HTTP endpoints the cluster serves, by name: PD's API ([`PD_ENDPOINT`]) on every member.
    /// The stores' status ports are not among them: their addresses are what PD reports.
    pub fn endpoints(&self) -> Vec<ServedEndpoint> {
        vec![ServedEndpoint { name: PD_ENDPOINT.into(), urls: self.pd_urls() }]
    }

    /// What a client that monitors and operates the cluster needs: PD's API (reads, and writes for
    /// actions) on [`PD_ENDPOINT`], and the stores' status ports on loopback (reads).
    pub fn client_access() -> Vec<NeededAccess> {
        vec![
            NeededAccess {
                endpoint: Some(PD_ENDPOINT.into()),
                url: None,
                methods: vec!["GET".into(), "POST".into(), "DELETE".into()],
                paths: vec!["/pd/api/v1/**".into()],
            },
            NeededAccess {
                endpoint: None,
                url: Some("http://127.0.0.1:*".into()),
                methods: vec!["GET".into()],
                paths: vec!["/status".into()],
            },
        ]
    }

    /// A one-line description of the cluster's size, e.g. `6 stores, 3 PD members, 1000 regions`.
    pub fn summary(&self) -> String {
        let sim = lock(&self.sim);
        format!("{} stores, {} PD members, {} regions", sim.stores.len(), sim.members.len(), sim.regions.len())
    }

    /// What the discovery file ([`crate::control::write_discovery`]) records for this cluster,
    /// served by the current process.
    pub fn discovery_info(&self) -> crate::control::DiscoveryInfo {
        crate::control::DiscoveryInfo {
            control_url: self.control_url(),
            pd_urls: self.pd_urls(),
            pid: std::process::id(),
        }
    }

    /// The stores' status addresses (`127.0.0.1:port`) by store id.
    pub fn status_addrs(&self) -> BTreeMap<u64, String> {
        lock(&self.sim).stores.iter().map(|s| (s.id, s.status_address.clone())).collect()
    }

    /// Locks the simulation for inspection or direct manipulation.
    pub fn sim(&self) -> MutexGuard<'_, Simulation> {
        lock(&self.sim)
    }

    /// Advances the simulation by `ms` of simulated time at once.
    pub fn step(&self, ms: u64) {
        lock(&self.sim).advance(ms);
    }

    /// Kills store `id`: its status port closes, and the simulation stops its heartbeats.
    pub async fn kill_store(&self, id: u64) -> Result<()> {
        let mut stores = self.stores.lock().await;
        let listener = stores.get_mut(&id).with_context(|| format!("store {id} not found"))?;
        // Mark the process dead first so that no request answers between the two steps.
        lock(&self.sim).kill_store(id)?;
        listener.stop().await;
        Ok(())
    }

    /// Restarts store `id` on the same status address.
    pub async fn restart_store(&self, id: u64) -> Result<()> {
        let mut stores = self.stores.lock().await;
        let listener = stores.get_mut(&id).with_context(|| format!("store {id} not found"))?;
        listener.start().await?;
        lock(&self.sim).restart_store(id)?;
        Ok(())
    }

    /// Stops PD member `name` (e.g. `pd-0`): its port closes; a lost leader is replaced if a majority remains.
    pub async fn kill_pd_member(&self, name: &str) -> Result<()> {
        let idx = self.member_index(name)?;
        lock(&self.sim).kill_pd_member(name)?;
        self.members.lock().await[idx].stop().await;
        Ok(())
    }

    /// Starts PD member `name` again on the same port.
    pub async fn restart_pd_member(&self, name: &str) -> Result<()> {
        let idx = self.member_index(name)?;
        self.members.lock().await[idx].start().await?;
        lock(&self.sim).restart_pd_member(name)?;
        Ok(())
    }

    /// Injects a fault (see [`Simulation::inject`]); killed or restarted processes close or reopen
    /// their ports before this returns. A refused fault's [`crate::SimError`] is in the error chain.
    pub async fn inject(&self, fault: Fault) -> Result<FaultId> {
        let id = self.sim().inject(fault)?;
        self.sync_listeners().await?;
        Ok(id)
    }

    /// Clears an active fault, restarting what it killed.
    pub async fn clear(&self, id: FaultId) -> Result<()> {
        self.sim().clear(id)?;
        self.sync_listeners().await
    }

    /// Clears every active fault; returns their ids.
    pub async fn clear_all(&self) -> Result<Vec<FaultId>> {
        let ids = self.sim().clear_all();
        self.sync_listeners().await?;
        Ok(ids)
    }

    /// Runs a fault script as [`Simulation::run_script`] does, opening and closing ports as processes
    /// die and restart. Meant for a cluster started with speed 0.
    pub async fn run_script(&self, script: &[(u64, Fault)], until_ms: u64) -> Result<Vec<FaultId>> {
        let mut steps: Vec<&(u64, Fault)> = script.iter().collect();
        steps.sort_by_key(|(at, _)| *at);
        let mut ids = Vec::with_capacity(steps.len());
        for (at, fault) in steps {
            self.sim().advance_to(*at);
            ids.push(self.inject(fault.clone()).await?);
        }
        self.sim().advance_to(until_ms);
        Ok(ids)
    }

    /// Opens the listeners of running processes and closes those of dead ones, after a change made
    /// directly in the model (a fault or its clearing).
    async fn sync_listeners(&self) -> Result<()> {
        let (stores_alive, members_alive): (BTreeMap<u64, bool>, Vec<bool>) = {
            let sim = self.sim();
            (sim.stores.iter().map(|s| (s.id, s.alive)).collect(), sim.members.iter().map(|m| m.alive).collect())
        };
        for (id, listener) in self.stores.lock().await.iter_mut() {
            match stores_alive.get(id) {
                Some(true) => listener.start().await?,
                _ => listener.stop().await,
            }
        }
        for (listener, alive) in self.members.lock().await.iter_mut().zip(members_alive) {
            if alive {
                listener.start().await?;
            } else {
                listener.stop().await;
            }
        }
        Ok(())
    }

    fn member_index(&self, name: &str) -> Result<usize> {
        lock(&self.sim)
            .members
            .iter()
            .position(|m| m.name == name)
            .with_context(|| format!("pd member {name} not found"))
    }

    /// Stops stepping and closes every listener.
    pub async fn shutdown(&self) {
        let stepper = self.stepper.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(task) = stepper {
            task.abort();
        }
        for listener in self.members.lock().await.iter_mut() {
            listener.stop().await;
        }
        for listener in self.stores.lock().await.values_mut() {
            listener.stop().await;
        }
        if let Some(listener) = self.control.lock().await.as_mut() {
            listener.stop().await;
        }
    }
}

fn lock(sim: &Mutex<Simulation>) -> MutexGuard<'_, Simulation> {
    sim.lock().unwrap_or_else(|e| e.into_inner())
}

/// Runs as many ticks as simulated time owes: real elapsed time × speed.
async fn step_loop(sim: Arc<Mutex<Simulation>>, speed: f64) {
    let started = Instant::now();
    let mut interval = tokio::time::interval(STEP_INTERVAL);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        interval.tick().await;
        let target_ms = (started.elapsed().as_secs_f64() * 1000.0 * speed) as u64;
        let mut sim = lock(&sim);
        let mut ran = 0;
        while sim.now_ms + TICK_MS <= target_ms && ran < MAX_TICKS_PER_WAKE {
            sim.tick();
            ran += 1;
        }
    }
}
