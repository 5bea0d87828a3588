//! Start and stop: [`App::build`] turns a [`Config`] into the shared state (backend, executor,
//! engine, gate, job store); [`run`], [`run_with_grpc`] and [`run_worker`] serve it until their
//! `shutdown` future resolves, then shut down gracefully (no new work, running executions get
//! the grace period, then their sandboxes are killed, then the backend's resources go).

use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use isobox_core::dedup::DedupConfig;
use isobox_core::engine::{CacheScope, Engine};
use isobox_core::slots::SlotsConfig;
use isobox_core::{Executor, LanguageInfo, LanguageTable, Policy};
use isobox_sandbox::{Backend, DockerBackend, NativeBackend, NativeConfig, RootFs};
use tokio::net::TcpListener;

use crate::config::{self, Config};
use crate::state::App;
use crate::{api, auth, cluster, grpc, http, jobs, transport};

/// How the backend of a runtime is made: a native sandbox whose root is the runtime's, or a
/// docker backend running the runtime's image (`isobox runtime build --docker`).
fn runtime_backends(config: &Config) -> isobox_core::service::BackendMaker {
    let docker = (config.backend == config::BackendKind::Docker).then(|| config.docker.clone());
    Arc::new(move |rt: &isobox_core::runtimes::Runtime| {
        let backend: Arc<dyn Backend> = match &docker {
            Some(d) => {
                let image = rt.manifest.image.clone().ok_or_else(|| {
                    isobox_sandbox::SandboxError::Unsupported(format!(
                        "runtime {} has no docker image: build it with `isobox runtime build --docker {}`",
                        rt.manifest.name, rt.manifest.name
                    ))
                })?;
                Arc::new(DockerBackend::new(isobox_sandbox::DockerConfig {
                    image,
                    instance: format!("{}-{}", d.instance, rt.manifest.name),
                    ..d.clone()
                })?)
            }
            None => Arc::new(NativeBackend::new(NativeConfig {
                rootfs: RootFs::Dir(rt.root.clone()),
                ..NativeConfig::default()
            })?),
        };
        Ok(backend)
    })
}

/// The runtimes of the runtimes directory this backend can run (on docker: those with an
/// image); the others are logged and not offered.
fn runnable_runtimes(config: &Config) -> Vec<isobox_core::runtimes::Runtime> {
    let (ok, left) = isobox_core::runtimes::runnable(
        isobox_core::runtimes::scan_for_runs(&config.runtimes_dir),
        config.backend == config::BackendKind::Docker,
    );
    if !left.is_empty() {
        tracing::warn!(
            runtimes = %left.join(", "),
            "runtimes without a docker image are not offered (isobox runtime build --docker NAME)"
        );
    }
    ok
}

/// Shuts down every backend the service started (the host's and the runtimes'): what they
/// hold ahead of runs (pooled containers) goes with the server.
async fn shut_down_backends(app: &App) {
    let backends = app.engine.executor().started_backends();
    let _ = tokio::task::spawn_blocking(move || {
        for b in backends {
            b.shutdown();
        }
    })
    .await;
}

/// The whole OpenAPI document (`/openapi.json`): the native API and the compatibility APIs.
pub fn openapi_document() -> serde_json::Value {
    let mut doc = http::openapi::document();
    crate::compat::openapi(&mut doc);
    http::openapi::conventions(&mut doc);
    doc
}

impl App {
    /// Creates the backend and the services from the configuration (blocking: it probes the
    /// toolchains in the sandbox). With `REDIS_URL` it must run inside a tokio runtime context
    /// (`Runtime::enter`): the Redis client is created here, connecting lazily.
    pub fn build(config: Config) -> Result<App, String> {
        let redis = match &config.redis_url {
            Some(url) => Some(Arc::new(cluster::Redis::connect(
                url,
                config.redis_timeout,
            )?)),
            None => None,
        };
        let mut gate = auth::gate::Gate::new(&config.auth_type, &config.auth)?;
        if let Some(r) = &redis {
            gate = gate.with_shared(r.clone());
        }
        let tls = match (&config.auth.tls_cert, &config.auth.tls_key) {
            (Some(cert), Some(key)) => Some(transport::TlsReloader::new(transport::TlsSettings {
                cert: cert.clone(),
                key: key.clone(),
                client_ca: config.auth.mtls_ca.clone(),
                crl: config.auth.mtls_crl.clone(),
                client_cert_optional: client_cert_optional(&config.auth_type),
            })?),
            _ => None,
        };
        let backend: Arc<dyn Backend> = if config.backend == config::BackendKind::Docker {
            // Containers are created by the engine: the sandbox launcher has nothing to do.
            isobox_sandbox::native::launcher::stop();
            Arc::new(DockerBackend::new(config.docker.clone()).map_err(|e| e.to_string())?)
        } else {
            let mut native = NativeConfig {
                warm_pool: config.warm_pool,
                ..NativeConfig::default()
            };
            if let Some(dir) = &config.rootfs {
                native.rootfs = RootFs::Dir(dir.clone());
            }
            Arc::new(NativeBackend::new(native).map_err(|e| e.to_string())?)
        };
        let table = match &config.languages_file {
            Some(p) => LanguageTable::load(p).map_err(|e| e.to_string())?,
            None => LanguageTable::builtin(),
        };
        let policy = Policy {
            max_tests: config.max_tests,
            ..Policy::default()
        };
        let mut executor = Executor::new(backend, table, policy)
            .with_compile_cache(isobox_core::CompileCacheConfig {
                max_bytes: config.compile_cache_bytes,
                max_entry_bytes: config.compile_cache_entry_bytes,
                ..Default::default()
            })
            .with_runtimes(
                runnable_runtimes(&config),
                runtime_backends(&config),
                config.host_runtime,
            );
        if let Some(p) = &config.patterns_file {
            executor = executor.with_patterns(
                isobox_core::patterns::PatternPolicy::load(p).map_err(|e| e.to_string())?,
            );
        }
        let languages: Vec<LanguageInfo> = executor
            .list_languages()
            .into_iter()
            .filter(|l| l.available)
            .collect();
        let engine = Engine::new(
            Arc::new(executor),
            DedupConfig {
                enabled: config.dedup_enabled,
                ttl: config.dedup_ttl,
                max_entries: config.dedup_max_entries,
                max_bytes: config.dedup_max_bytes,
            },
            SlotsConfig {
                slots: config.slots,
                queue: config.queue,
                max_wait: config.queue_timeout,
            },
            match config.dedup_scope {
                config::DedupScope::Caller => CacheScope::PerCaller,
                config::DedupScope::Global => CacheScope::Global,
            },
        );
        let engine = match &redis {
            Some(r) => engine.with_shared_cache(r.clone()),
            None => engine,
        };
        let jobs = Arc::new(jobs::Jobs::new(
            redis.clone(),
            config.job_result_ttl,
            config.job_claim,
        ));
        Ok(App {
            redis,
            jobs,
            config,
            engine: Arc::new(engine),
            metrics: Default::default(),
            gate,
            tls,
            languages: std::sync::RwLock::new(Arc::new(languages)),
            shutting_down: AtomicBool::new(false),
            callback_shape: crate::compat::callback,
            openapi: openapi_document(),
        })
    }

    /// Rescans the runtimes directory (blocking: it probes what changed): new runtimes are
    /// offered, removed ones no longer; runs under way keep the sandbox they have. Returns the
    /// names of the runtimes offered now. On SIGHUP.
    pub fn reload_runtimes(&self) -> Vec<String> {
        let executor = self.engine.executor();
        executor.set_runtimes(runnable_runtimes(&self.config));
        let languages: Vec<LanguageInfo> = executor
            .list_languages()
            .into_iter()
            .filter(|l| l.available)
            .collect();
        *self.languages.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(languages);
        executor
            .runtimes()
            .iter()
            .map(|r| r.name().to_string())
            .collect()
    }
}

/// Whether a client may connect without a certificate although `MTLS_CA_CERT` is set: when
/// `AUTH_TYPE` lists `mtls` with other methods (an API key or a token may admit instead).
/// With `mtls` alone, or `MTLS_CA_CERT` set without `mtls` in `AUTH_TYPE`, every client must
/// present one at the handshake.
fn client_cert_optional(methods: &[auth::AuthMethod]) -> bool {
    methods.contains(&auth::AuthMethod::Mtls)
        && methods.iter().any(|m| *m != auth::AuthMethod::Mtls)
}

/// Starts this node's job workers (`ISOBOX_JOB_WORKERS`), running jobs through the API layer.
fn start_job_workers(app: &Arc<App>, stop: tokio::sync::watch::Receiver<bool>) {
    jobs::consume::start_workers(
        app.jobs.clone(),
        app.config.job_workers,
        stop,
        api::jobs::runner(app.clone()),
    );
}

/// Serves `app` on `listener` until `shutdown` resolves; then graceful shutdown: no new
/// connections, running executions get `shutdown_grace` to finish, then their sandboxes are
/// killed; returns when every connection is closed. REST only: see [`run_with_grpc`].
pub async fn run(
    listener: TcpListener,
    app: Arc<App>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    run_with_grpc(listener, None, app, shutdown).await
}

/// A job-only node (`isobox worker`): the job workers, and `/health` and `/metrics` on
/// `listener`, until `shutdown`; then no new jobs are taken, running ones get the grace period
/// (after it their sandboxes are killed and their jobs, still pending in Redis, are taken over
/// by other workers).
pub async fn run_worker(
    listener: TcpListener,
    app: Arc<App>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    start_job_workers(&app, stop_rx.clone());
    let router = http::worker_router(app.clone());
    let mut stopped = stop_rx.clone();
    let limits = app.config.http;
    let server = tokio::spawn(transport::plain::serve(
        listener,
        router,
        limits,
        async move {
            let _ = stopped.wait_for(|s| *s).await;
        },
    ));
    shutdown.await;
    tracing::info!(
        "shutting down: no new jobs, {:?} for running ones",
        app.config.shutdown_grace
    );
    app.shutting_down.store(true, Ordering::SeqCst);
    let _ = stop_tx.send(true);
    let deadline = tokio::time::Instant::now() + app.config.shutdown_grace;
    while app.engine.load().0 > 0 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    if app.engine.load().0 > 0 {
        tracing::warn!("grace period over: killing the sandboxes still running");
        for b in app.engine.executor().started_backends() {
            b.cancel_all();
        }
    }
    app.engine.close();
    let _ = server.await;
    shut_down_backends(&app).await;
    Ok(())
}

/// [`run`], plus the gRPC API on `grpc` when given (same app, same graceful shutdown; the gRPC
/// health service answers NOT_SERVING once shutdown begins).
pub async fn run_with_grpc(
    listener: TcpListener,
    grpc: Option<TcpListener>,
    app: Arc<App>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    start_job_workers(&app, stop_rx.clone());
    let router = http::router(app.clone(), crate::compat::routes(&app));
    let stopped = {
        let mut stop_rx = stop_rx.clone();
        async move {
            let _ = stop_rx.wait_for(|s| *s).await;
        }
    };
    let rest = match &app.tls {
        Some(tls) => tokio::spawn(transport::https::serve(
            listener,
            router,
            tls.source(transport::Alpn::Http1),
            app.config.http,
            stopped,
        )),
        None => tokio::spawn(transport::plain::serve(
            listener,
            router,
            app.config.http,
            stopped,
        )),
    };
    let grpc = grpc.map(|l| tokio::spawn(grpc::serve(l, app.clone(), stop_rx)));
    let aborts: Vec<_> = std::iter::once(rest.abort_handle())
        .chain(grpc.as_ref().map(|g| g.abort_handle()))
        .collect();
    // Both servers as one task: it ends when both have, or when either fails.
    let mut server = tokio::spawn(async move {
        let rest = async { rest.await.map_err(std::io::Error::other)? };
        let grpc = async {
            match grpc {
                Some(g) => g.await.map_err(std::io::Error::other)?,
                None => Ok(()),
            }
        };
        tokio::try_join!(rest, grpc).map(|_| ())
    });
    // Expired cache entries are dropped even when nobody asks for them.
    let purger = {
        let app = app.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(5));
            loop {
                tick.tick().await;
                app.engine.purge_expired();
                app.jobs.purge();
                // A changed API keys file takes effect without a restart.
                app.gate.reload();
            }
        })
    };
    // Changed TLS files (certificate, key, client CA, CRL) apply to new connections without a
    // restart; SIGHUP reloads them at once (src/main.rs).
    let tls_watch = app.tls.clone().map(|tls| {
        let every = app.config.tls_reload;
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let tls = tls.clone();
                // Reading and parsing files blocks.
                let _ = tokio::task::spawn_blocking(move || tls.reload_if_changed()).await;
            }
        })
    });
    let stop_tls_watch = move || {
        if let Some(t) = &tls_watch {
            t.abort();
        }
    };
    tokio::select! {
        r = &mut server => {
            stop_tls_watch();
            purger.abort();
            aborts.iter().for_each(|a| a.abort());
            return r.map_err(std::io::Error::other)?;
        }
        _ = shutdown => {}
    }
    tracing::info!(
        "shutting down: no new connections, {:?} for running executions",
        app.config.shutdown_grace
    );
    app.shutting_down.store(true, Ordering::SeqCst);
    // Nothing new starts: queued and later requests get 503; running ones get the grace period.
    app.engine.close();
    let _ = stop_tx.send(true);
    let result = match tokio::time::timeout(app.config.shutdown_grace, &mut server).await {
        Ok(r) => r,
        Err(_) => {
            tracing::warn!("grace period over: killing the sandboxes still running");
            for b in app.engine.executor().started_backends() {
                b.cancel_all();
            }
            match tokio::time::timeout(Duration::from_secs(10), &mut server).await {
                Ok(r) => r,
                Err(_) => {
                    server.abort();
                    aborts.iter().for_each(|a| a.abort());
                    Ok(Ok(()))
                }
            }
        }
    };
    purger.abort();
    stop_tls_watch();
    // What the backend holds ahead of runs (pooled containers) goes with the server.
    shut_down_backends(&app).await;
    result.map_err(std::io::Error::other)?
}
