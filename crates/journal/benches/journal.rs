//! Journal benchmark: durable message throughput with group commit next to a raw batched
//! insert of the same rows, and recovery time of a 100,000-entry journal with and without a
//! snapshot. Prints one markdown table.
//!
//! `cargo bench -p plexspaces-journal --all-features --bench journal`
//! (PostgreSQL at `JOURNAL_PG_URL`, default `postgres://postgres@127.0.0.1:5432/test`;
//! `JOURNAL_BENCH_BACKENDS=sqlite` or `=postgres` runs one backend only).
//!
//! Throughput is measured in 3 rounds, each running the raw insert and then the durable
//! workload back to back (so both see the same machine load); the table shows medians.

#[cfg(not(any(feature = "sqlite", feature = "postgres")))]
fn main() {
    println!("enable the sqlite and/or postgres features to run the journal benchmark");
}

#[cfg(any(feature = "sqlite", feature = "postgres"))]
fn main() {
    imp::main();
}

#[cfg(any(feature = "sqlite", feature = "postgres"))]
mod imp {
    use std::sync::Arc;
    use std::time::{Duration, Instant};

    use plexspaces_journal::{
        Begin, CheckpointPolicy, Durable, DurableExecution, DurableHandler, DurableOptions,
        GroupCommitStats, Journal, MemoryJournal, Result, StreamId,
    };

    const STREAMS: u64 = 512;
    const MSGS_PER_STREAM: u64 = 20;
    const ROWS_PER_MSG: u64 = 3; // message received, clock read, reply
    const ROUNDS: usize = 3;
    const RECOVERY_ENTRIES: u64 = 100_000;

    /// Counts messages; `replayed` counts handler runs in this process (not snapshotted).
    #[derive(Debug, Default)]
    struct Counter {
        count: u64,
        replayed: u64,
    }

    #[async_trait::async_trait]
    impl DurableHandler for Counter {
        async fn handle(&mut self, _exec: &mut DurableExecution, _m: &[u8]) -> Result<Vec<u8>> {
            self.count += 1;
            self.replayed += 1;
            Ok(self.count.to_le_bytes().to_vec())
        }
        fn snapshot(&self) -> Result<Vec<u8>> {
            Ok(self.count.to_le_bytes().to_vec())
        }
        fn restore(&mut self, s: &[u8]) -> Result<()> {
            let mut b = [0u8; 8];
            b.copy_from_slice(s.get(..8).unwrap_or(&[0; 8]));
            self.count = u64::from_le_bytes(b);
            Ok(())
        }
    }

    fn no_checkpoint() -> DurableOptions {
        DurableOptions {
            checkpoint: CheckpointPolicy {
                every_messages: None,
                every: None,
                truncate: false,
            },
            ..DurableOptions::default()
        }
    }

    struct Rate {
        msgs: f64,
        rows: f64,
        per_txn: f64,
    }

    /// Durable messages through the engine from many concurrent streams (activation is not
    /// timed): each message is `begin_message`, `now()`, `commit` = one append of 3 rows.
    async fn durable_rate(
        journal: Arc<dyn Journal>,
        tag: &str,
        stats: &dyn Fn() -> GroupCommitStats,
    ) -> Rate {
        let mut execs = Vec::new();
        for s in 0..STREAMS {
            let stream = StreamId::new("bench", tag, &format!("s{s}"));
            execs.push(
                DurableExecution::activate(journal.clone(), stream, no_checkpoint())
                    .await
                    .expect("activate"),
            );
        }
        let before = stats();
        let start = Instant::now();
        let mut tasks = Vec::new();
        for mut exec in execs {
            tasks.push(tokio::spawn(async move {
                for i in 0..MSGS_PER_STREAM {
                    if let Begin::Started { .. } =
                        exec.begin_message(&i.to_le_bytes(), None).await?
                    {
                        let t = exec.now()?;
                        exec.commit(t.to_le_bytes().to_vec()).await?;
                    }
                }
                Ok::<_, plexspaces_journal::Error>(())
            }));
        }
        for t in tasks {
            t.await.expect("task").expect("durable message");
        }
        let secs = start.elapsed().as_secs_f64();
        let after = stats();
        let msgs = (STREAMS * MSGS_PER_STREAM) as f64;
        Rate {
            msgs: msgs / secs,
            rows: msgs * ROWS_PER_MSG as f64 / secs,
            per_txn: (after.writes - before.writes) as f64
                / (after.transactions - before.transactions).max(1) as f64,
        }
    }

    /// Builds a 100k-entry stream (50k messages of 2 entries) in memory, optionally with a
    /// snapshot after 90% of it, and copies it into `journal` with large appends.
    async fn seed_recovery(journal: &Arc<dyn Journal>, stream: &StreamId, snapshot: bool) {
        let mem: Arc<dyn Journal> = Arc::new(MemoryJournal::new());
        let mut d = Durable::activate(
            mem.clone(),
            stream.clone(),
            no_checkpoint(),
            Counter::default(),
        )
        .await
        .expect("activate");
        let msgs = RECOVERY_ENTRIES / 2;
        for i in 0..msgs {
            d.handle(&i.to_le_bytes(), None).await.expect("handle");
            if snapshot && i + 1 == msgs * 9 / 10 {
                d.checkpoint().await.expect("checkpoint");
            }
        }
        let entries = mem.read(stream, 1, u64::MAX).await.expect("read");
        let epoch = journal.acquire_epoch(stream).await.expect("epoch");
        for chunk in entries.chunks(5_000) {
            journal
                .append(stream, epoch, chunk.to_vec())
                .await
                .expect("append");
        }
        if let Some(s) = mem.latest_snapshot(stream).await.expect("snapshot") {
            journal
                .save_snapshot(stream, epoch, s.seq, s.data)
                .await
                .expect("save snapshot");
        }
    }

    struct Recovery {
        took: Duration,
        count: u64,
        entries: u64,
        replayed: u64,
    }

    async fn recover(journal: &Arc<dyn Journal>, stream: &StreamId) -> Recovery {
        let start = Instant::now();
        let d = Durable::activate(
            journal.clone(),
            stream.clone(),
            no_checkpoint(),
            Counter::default(),
        )
        .await
        .expect("recover");
        let took = start.elapsed();
        Recovery {
            took,
            count: d.handler().count,
            entries: journal.history_len(stream).await.expect("len"),
            replayed: d.handler().replayed,
        }
    }

    struct Column {
        name: &'static str,
        msgs: f64,
        rows: f64,
        per_txn: f64,
        raw: f64,
        ratio: f64,
        plain: Recovery,
        snap: Recovery,
    }

    fn median(mut v: Vec<f64>) -> f64 {
        v.sort_by(f64::total_cmp);
        v.get(v.len() / 2).copied().unwrap_or(0.0)
    }

    async fn column(
        name: &'static str,
        journal: Arc<dyn Journal>,
        stats: &dyn Fn() -> GroupCommitStats,
        mut raw_round: impl AsyncFnMut(usize) -> f64,
    ) -> Column {
        let (mut msgs, mut rows, mut per_txn, mut raw, mut ratio) =
            (vec![], vec![], vec![], vec![], vec![]);
        for round in 0..ROUNDS {
            let r = raw_round(round).await;
            let d = durable_rate(journal.clone(), &format!("rate{round}"), stats).await;
            ratio.push(d.rows / r);
            msgs.push(d.msgs);
            rows.push(d.rows);
            per_txn.push(d.per_txn);
            raw.push(r);
        }
        let plain = StreamId::new("bench", "recovery", "plain");
        let snap = StreamId::new("bench", "recovery", "snap");
        seed_recovery(&journal, &plain, false).await;
        seed_recovery(&journal, &snap, true).await;
        let plain = recover(&journal, &plain).await;
        let snap = recover(&journal, &snap).await;
        assert_eq!(
            plain.count, snap.count,
            "both recoveries rebuild the same state"
        );
        Column {
            name,
            msgs: median(msgs),
            rows: median(rows),
            per_txn: median(per_txn),
            raw: median(raw),
            ratio: median(ratio),
            plain,
            snap,
        }
    }

    const RAW_ROWS: u64 = STREAMS * MSGS_PER_STREAM * ROWS_PER_MSG;

    #[cfg(feature = "sqlite")]
    async fn sqlite_column(dir: &std::path::Path) -> Column {
        use plexspaces_journal::{SqliteJournal, SqliteOptions};
        let path = dir.join("bench.db");
        let sqlite = SqliteJournal::open(SqliteOptions::new(&path))
            .await
            .expect("open");
        let journal: Arc<dyn Journal> = Arc::new(sqlite.clone());
        // raw: the same number of rows and row shape, same table layout, multi-row INSERTs
        // of 500 rows, 1,000 rows per transaction, same synchronous=FULL WAL database
        let url = format!("sqlite://{}", path.display());
        let pool = sqlx::sqlite::SqlitePoolOptions::new()
            .max_connections(1)
            .connect_with(
                url.parse::<sqlx::sqlite::SqliteConnectOptions>()
                    .expect("url")
                    .journal_mode(sqlx::sqlite::SqliteJournalMode::Wal)
                    .synchronous(sqlx::sqlite::SqliteSynchronous::Full),
            )
            .await
            .expect("pool");
        sqlx::query(
            "CREATE TABLE raw_entries (tenant TEXT NOT NULL, namespace TEXT NOT NULL,
             actor_id TEXT NOT NULL, seq INTEGER NOT NULL, kind INTEGER NOT NULL,
             payload BLOB NOT NULL, checksum INTEGER NOT NULL,
             PRIMARY KEY (tenant, namespace, actor_id, seq))",
        )
        .execute(&pool)
        .await
        .expect("create raw");
        let stats = || sqlite.group_commit_stats();
        let col = column("SQLite (WAL, synchronous=FULL)", journal, &stats, async |round| {
            let actor = format!("raw{round}");
            let start = Instant::now();
            let mut seq = 0i64;
            while (seq as u64) < RAW_ROWS {
                let mut tx = pool.begin().await.expect("begin");
                for _ in 0..2 {
                    let mut qb = sqlx::QueryBuilder::<sqlx::Sqlite>::new(
                        "INSERT INTO raw_entries (tenant, namespace, actor_id, seq, kind, payload, checksum) ",
                    );
                    qb.push_values(0..500, |mut b, _| {
                        seq += 1;
                        b.push_bind("bench")
                            .push_bind("raw")
                            .push_bind(actor.clone())
                            .push_bind(seq)
                            .push_bind(1i64)
                            .push_bind(vec![7u8; 24])
                            .push_bind(seq);
                    });
                    qb.build().execute(&mut *tx).await.expect("insert");
                }
                tx.commit().await.expect("commit");
            }
            seq as f64 / start.elapsed().as_secs_f64()
        })
        .await;
        pool.close().await;
        col
    }

    #[cfg(feature = "postgres")]
    async fn postgres_column() -> Column {
        use plexspaces_journal::{PostgresJournal, PostgresOptions};
        let url = std::env::var("JOURNAL_PG_URL")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into());
        let schema = format!("pj_bench_{}", std::process::id());
        let pg = PostgresJournal::open(PostgresOptions::new(&url).with_schema(&schema))
            .await
            .expect("open");
        let journal: Arc<dyn Journal> = Arc::new(pg.clone());
        let pool = sqlx::PgPool::connect(&url).await.expect("pool");
        sqlx::query(&format!(
            "CREATE TABLE {schema}.raw_entries (tenant TEXT NOT NULL, namespace TEXT NOT NULL,
             actor_id TEXT NOT NULL, seq BIGINT NOT NULL, kind SMALLINT NOT NULL,
             payload BYTEA NOT NULL, checksum BIGINT NOT NULL,
             PRIMARY KEY (tenant, namespace, actor_id, seq))"
        ))
        .execute(&pool)
        .await
        .expect("create raw");
        let stats = || pg.group_commit_stats();
        let col = column("PostgreSQL 15 (127.0.0.1)", journal, &stats, async |round| {
            let actor = format!("raw{round}");
            let start = Instant::now();
            let mut seq = 0i64;
            while (seq as u64) < RAW_ROWS {
                let mut tx = pool.begin().await.expect("begin");
                let mut qb = sqlx::QueryBuilder::<sqlx::Postgres>::new(format!(
                    "INSERT INTO {schema}.raw_entries (tenant, namespace, actor_id, seq, kind, payload, checksum) "
                ));
                qb.push_values(0..1000, |mut b, _| {
                    seq += 1;
                    b.push_bind("bench")
                        .push_bind("raw")
                        .push_bind(actor.clone())
                        .push_bind(seq)
                        .push_bind(1i16)
                        .push_bind(vec![7u8; 24])
                        .push_bind(seq);
                });
                qb.build().execute(&mut *tx).await.expect("insert");
                tx.commit().await.expect("commit");
            }
            seq as f64 / start.elapsed().as_secs_f64()
        })
        .await;
        let _ = sqlx::query(&format!("DROP SCHEMA {schema} CASCADE"))
            .execute(&pool)
            .await;
        col
    }

    fn rate(v: f64) -> String {
        if v >= 1000.0 {
            format!("{:.1}k", v / 1000.0)
        } else {
            format!("{v:.0}")
        }
    }

    #[tokio::main(flavor = "multi_thread", worker_threads = 2)]
    pub async fn main() {
        let only = std::env::var("JOURNAL_BENCH_BACKENDS").unwrap_or_default();
        let wanted = |b: &str| only.is_empty() || only.split(',').any(|x| x.trim() == b);
        let dir = tempfile::tempdir().expect("tempdir");
        let mut cols: Vec<Column> = Vec::new();
        #[cfg(feature = "sqlite")]
        if wanted("sqlite") {
            cols.push(sqlite_column(dir.path()).await);
        }
        #[cfg(feature = "postgres")]
        if wanted("postgres") {
            cols.push(postgres_column().await);
        }
        let names: Vec<&str> = cols.iter().map(|c| c.name).collect();
        println!("| metric | {} |", names.join(" | "));
        println!("|---|{}", "---|".repeat(cols.len()));
        let row = |name: &str, f: &dyn Fn(&Column) -> String| {
            let vals: Vec<String> = cols.iter().map(f).collect();
            println!("| {name} | {} |", vals.join(" | "));
        };
        row(
            &format!("durable messages/s ({STREAMS} concurrent streams, group commit)"),
            &|c| rate(c.msgs),
        );
        row("appends per transaction (group commit batch)", &|c| {
            format!("{:.0}", c.per_txn)
        });
        row("durable journal rows/s (3 rows per message)", &|c| {
            rate(c.rows)
        });
        row(
            "raw batched insert rows/s (same rows, 1,000 rows per transaction)",
            &|c| rate(c.raw),
        );
        row("durable ÷ raw (median of per-round ratios)", &|c| {
            format!("{:.2}", c.ratio)
        });
        row("recovery, 100k-entry journal, no snapshot", &|c| {
            format!(
                "{:.0} ms ({} entries, {} messages replayed)",
                c.plain.took.as_secs_f64() * 1000.0,
                c.plain.entries,
                c.plain.replayed
            )
        });
        row("recovery, 100k-entry journal, snapshot at 90%", &|c| {
            format!(
                "{:.0} ms ({} entries, {} messages replayed)",
                c.snap.took.as_secs_f64() * 1000.0,
                c.snap.entries,
                c.snap.replayed
            )
        });
    }
}
