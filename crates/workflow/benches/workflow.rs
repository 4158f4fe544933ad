//! Workflow benchmark: end-to-end latency (start → result) of a workflow with 3 activities,
//! run one at a time, and workflows completed per second with 100 running concurrently, on
//! memory, SQLite and PostgreSQL. Prints one markdown table.
//!
//! `cargo bench -p plexspaces-workflow --all-features --bench workflow`
//! (PostgreSQL at `WF_PG_URL`, default `postgres://postgres@127.0.0.1:5432/test`;
//! `WF_BENCH_QUICK=1` runs a few workflows only, as a smoke test).

#[cfg(not(all(feature = "sqlite", feature = "postgres")))]
fn main() {
    println!("enable the sqlite and postgres features to run the workflow benchmark");
}

#[cfg(all(feature = "sqlite", feature = "postgres"))]
fn main() {
    imp::main();
}

#[cfg(all(feature = "sqlite", feature = "postgres"))]
mod imp {
    use std::sync::Arc;
    use std::time::{Duration, Instant};

    use plexspaces_journal::{
        Journal, MemoryJournal, PostgresJournal, PostgresOptions, SqliteJournal, SqliteOptions,
    };
    use plexspaces_workflow::{
        workflow_fn, ActivityOptions, EngineOptions, MemoryWorkflowStore, SqlWorkflowStore,
        WorkflowContext, WorkflowEngine, WorkflowKey, WorkflowStore,
    };
    use tokio::sync::Semaphore;

    const CONCURRENCY: usize = 100;

    struct Figures {
        backend: &'static str,
        p50: Duration,
        p99: Duration,
        per_second: f64,
    }

    fn engine(journal: Arc<dyn Journal>, store: Arc<dyn WorkflowStore>) -> WorkflowEngine {
        let engine = WorkflowEngine::new(None, journal, store, EngineOptions::default());
        engine.register(workflow_fn(
            "three",
            |ctx: WorkflowContext, x: u64| async move {
                let opts = ActivityOptions::default();
                let a: u64 = ctx
                    .activity("reserve", &opts, |_| async move { Ok(x + 1) })
                    .await?;
                let b: u64 = ctx
                    .activity("charge", &opts, |_| async move { Ok(a * 2) })
                    .await?;
                let c: u64 = ctx
                    .activity("ship", &opts, |_| async move { Ok(b + 3) })
                    .await?;
                Ok(c)
            },
        ));
        engine
    }

    async fn one(engine: &WorkflowEngine, run: &str, i: usize) {
        let key = WorkflowKey::new("bench", run, &format!("wf-{i}"));
        engine
            .start(&key, "three", &(i as u64))
            .await
            .expect("start");
        let out: u64 = engine
            .result(&key, Some(Duration::from_secs(60)))
            .await
            .expect("result");
        assert_eq!(out, (i as u64 + 1) * 2 + 3);
    }

    async fn measure(
        backend: &'static str,
        engine: WorkflowEngine,
        sequential: usize,
        concurrent: usize,
    ) -> Figures {
        for i in 0..10 {
            one(&engine, "warmup", i).await;
        }
        let mut latencies = Vec::with_capacity(sequential);
        for i in 0..sequential {
            let t = Instant::now();
            one(&engine, "latency", i).await;
            latencies.push(t.elapsed());
        }
        latencies.sort();
        let pick =
            |q: f64| latencies[((latencies.len() as f64 * q) as usize).min(latencies.len() - 1)];
        let (p50, p99) = (pick(0.50), pick(0.99));

        let gate = Arc::new(Semaphore::new(CONCURRENCY));
        let t = Instant::now();
        let mut tasks = Vec::with_capacity(concurrent);
        for i in 0..concurrent {
            let permit = gate.clone().acquire_owned().await.expect("semaphore");
            let engine = engine.clone();
            tasks.push(tokio::spawn(async move {
                one(&engine, "throughput", i).await;
                drop(permit);
            }));
        }
        for task in tasks {
            task.await.expect("workflow task");
        }
        let per_second = concurrent as f64 / t.elapsed().as_secs_f64();
        Figures {
            backend,
            p50,
            p99,
            per_second,
        }
    }

    pub fn main() {
        let quick = std::env::var("WF_BENCH_QUICK").is_ok();
        let (sequential, concurrent) = if quick { (20, 200) } else { (500, 5_000) };
        let rt = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .expect("runtime");
        rt.block_on(async {
            let mut rows = Vec::new();
            rows.push(
                measure(
                    "memory",
                    engine(Arc::new(MemoryJournal::new()), Arc::new(MemoryWorkflowStore::new())),
                    sequential,
                    concurrent,
                )
                .await,
            );
            for (label, full) in [("SQLite, synchronous=FULL", true), ("SQLite, synchronous=NORMAL", false)] {
                let dir = tempfile::tempdir().expect("temp dir");
                let mut options = SqliteOptions::new(dir.path().join("journal.db"));
                options.synchronous_full = full;
                let journal = SqliteJournal::open(options).await.expect("sqlite journal");
                let store = SqlWorkflowStore::open_sqlite(dir.path().join("workflows.db"))
                    .await
                    .expect("sqlite store");
                rows.push(
                    measure(label, engine(Arc::new(journal), Arc::new(store)), sequential, concurrent)
                        .await,
                );
            }
            let url = std::env::var("WF_PG_URL")
                .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into());
            let schema = format!("wfbench_{}", std::process::id());
            let journal = PostgresJournal::open(PostgresOptions::new(&url).with_schema(&schema))
                .await
                .expect("postgres journal");
            let store = SqlWorkflowStore::open_postgres(&url, &schema)
                .await
                .expect("postgres store");
            rows.push(
                measure(
                    "PostgreSQL",
                    engine(Arc::new(journal), Arc::new(store)),
                    sequential,
                    concurrent,
                )
                .await,
            );
            let pool = sqlx::PgPool::connect(&url).await.expect("pg");
            sqlx::query(&format!("DROP SCHEMA IF EXISTS {schema} CASCADE"))
                .execute(&pool)
                .await
                .expect("drop bench schema");

            println!(
                "| backend | 3-activity workflow p50 | p99 | completed/s ({CONCURRENCY} concurrent) |"
            );
            println!("|---|---|---|---|");
            for r in rows {
                println!(
                    "| {} | {:.2} ms | {:.2} ms | {:.0} |",
                    r.backend,
                    r.p50.as_secs_f64() * 1e3,
                    r.p99.as_secs_f64() * 1e3,
                    r.per_second
                );
            }
            println!("\n({sequential} sequential workflows for latency, {concurrent} for throughput)");
        });
    }
}
