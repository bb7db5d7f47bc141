//! `hie bench search`: SearchPersons at the reception desk on PostgreSQL with a million persons
//! (the generated Chinese population, each record a person of its own, with its name's search
//! keys; set-based INSERTs: the table size the query is measured against, not a measurement),
//! beside the empty call measured in the same run. Each kind of query a clerk types is measured
//! on its own: the name in characters, in pinyin run together, in pinyin with spaces and
//! capitals, and initials with a birth date. Every search is consent-checked and audited per
//! person found, as served.

use std::time::{Duration, Instant};

use clap::Args;
use hie_population::domain::linkage::{Field, parse_birth_date};
use hie_population::domain::name_search::name_search_keys;
use hie_proto::population::SearchPersonsRequest;
use hie_proto::population::population_registry_client::PopulationRegistryClient;
use serde::Serialize;

use super::{
    CallFigures, CallFuture, PostgresServer, as_clerk, connect, health_call, loopback, measure,
    on_scratch_postgres, ratio, register_prefecture_organisations, scratch_settings,
};
use crate::Exchange;
use crate::population_file::{GeneratorOptions, Script, generate};

#[derive(Debug, Args)]
pub struct SearchArgs {
    /// Print the results as one line of JSON (the default indents them).
    #[arg(long)]
    pub json: bool,
    /// Persons in the registry.
    #[arg(long, default_value_t = 1_000_000)]
    pub persons: usize,
    #[command(flatten)]
    pub postgres: PostgresServer,
    /// How long each kind of query runs, in seconds.
    #[arg(long, default_value_t = 10)]
    pub seconds: u64,
    /// Clerks searching at once.
    #[arg(long, default_value_t = 8)]
    pub concurrency: usize,
    #[arg(long, default_value_t = 4)]
    pub connections: usize,
    /// Persons a page shows.
    #[arg(long, default_value_t = 20)]
    pub page_size: i32,
}

#[derive(Debug, Serialize)]
struct QueryFigures {
    query: &'static str,
    example: String,
    /// One clerk searching at a time.
    alone: CallFigures,
    /// `--concurrency` clerks at once.
    busy: CallFigures,
    /// The query's p99 over the empty call's at the same concurrency.
    alone_p99_to_empty_call_p99: f64,
    busy_p99_to_empty_call_p99: f64,
    /// Persons found per call, on average over the first hundred queries.
    mean_persons_per_page: f64,
}

#[derive(Debug, Serialize)]
struct SearchFigures {
    benchmark: &'static str,
    backend: &'static str,
    cores: usize,
    persons: usize,
    name_search_keys: i64,
    fill_seconds: f64,
    concurrency: usize,
    empty_call_alone: CallFigures,
    empty_call_busy: CallFigures,
    queries: Vec<QueryFigures>,
    target_p99_microseconds: u64,
}

pub async fn run_search(args: SearchArgs) -> Result<(), String> {
    if !(1..=200).contains(&args.page_size) {
        return Err(format!(
            "--page-size {} must lie between 1 and 200",
            args.page_size
        ));
    }
    if args.persons < 100 {
        return Err(format!("--persons {} must be at least 100", args.persons));
    }
    on_scratch_postgres(&args.postgres.url, args.json, async |url| {
        search_on(&url, &args).await
    })
    .await
}

/// One generated person as the fill writes it.
struct Filled {
    name: String,
    sex: Option<String>,
    birth_date: Option<String>,
    division: Option<String>,
}

/// The generated population, one person per record.
fn population(persons: usize) -> Vec<Filled> {
    generate(&GeneratorOptions {
        script: Script::Chinese,
        records: persons,
        id_share: 0.8,
        seed: 2026,
    })
    .into_iter()
    .filter_map(|record| {
        let fields = record.fields;
        let name = fields.get(Field::FullName)?.to_owned();
        let birth_date = fields
            .get(Field::BirthDate)
            .and_then(|d| parse_birth_date(d).ok())
            .map(|(y, m, d)| format!("{y:04}-{m:02}-{d:02}"))
            // A mistyped date in the future is refused at registration; so is it here.
            .filter(|iso| hie_core::domain::BirthDate::parse(iso).is_ok());
        Some(Filled {
            name,
            sex: fields.get(Field::Sex).map(str::to_owned),
            birth_date,
            division: fields.get(Field::ResidentId).map(|id| id[..6].to_owned()),
        })
    })
    .collect()
}

/// Writes persons, their records and the records' name keys, set-based, in chunks.
async fn fill(exchange: &Exchange, people: &[Filled]) -> Result<(), String> {
    let pool = exchange.database.pool();
    for (c, chunk) in people.chunks(5_000).enumerate() {
        let mut rows = Vec::with_capacity(chunk.len());
        let mut keys = Vec::with_capacity(chunk.len() * 4);
        for (i, person) in chunk.iter().enumerate() {
            let n = c * 5_000 + i;
            // Ids are UUIDs, as the registry's are: persons and records numbered apart.
            let record = uuid::Uuid::from_u64_pair(0x7265_636f_7264, n as u64).to_string();
            for key in name_search_keys(&person.name) {
                keys.push(serde_json::json!({"key": key, "record": record}));
            }
            rows.push(serde_json::json!({
                "id": uuid::Uuid::from_u64_pair(0x7065_7273_6f6e, n as u64).to_string(),
                "record": record,
                "local": format!("B{n}"),
                "name": person.name,
                "name_key": person.name.to_lowercase(),
                "sex": person.sex,
                "birth_date": person.birth_date,
                "division": person.division,
            }));
        }
        let rows = serde_json::Value::Array(rows).to_string();
        let columns = "r(id text, record text, local text, name text, name_key text, sex text, \
                       birth_date text, division text)";
        for sql in [
            format!(
                "INSERT INTO persons (id, name, sex, birth_date, division_code, created_at, updated_at) \
                 SELECT id, name, sex, birth_date, division, 0, 0 FROM json_to_recordset($1::json) AS {columns}"
            ),
            format!(
                "INSERT INTO source_records (id, organisation_code, local_patient_number, person_id, name, \
                 name_key, sex, birth_date, division_code, created_at, updated_at) \
                 SELECT record, 'QDN-H01', local, id, name, name_key, sex, birth_date, division, 0, 0 \
                 FROM json_to_recordset($1::json) AS {columns}"
            ),
        ] {
            sqlx::query(sqlx::AssertSqlSafe(sql))
                .bind(&rows)
                .execute(pool)
                .await
                .map_err(|e| e.to_string())?;
        }
        sqlx::query(
            "INSERT INTO name_search_keys (key, source_record_id) \
             SELECT key, record FROM json_to_recordset($1::json) AS r(key text, record text)",
        )
        .bind(serde_json::Value::Array(keys).to_string())
        .execute(pool)
        .await
        .map_err(|e| e.to_string())?;
        if (c + 1) % 40 == 0 {
            eprintln!(
                "hie bench: {} of {} persons filled",
                (c + 1) * 5_000,
                people.len()
            );
        }
    }
    for statement in [
        "VACUUM (ANALYZE) persons",
        "VACUUM (ANALYZE) source_records",
        "VACUUM (ANALYZE) name_search_keys",
        "CHECKPOINT",
    ] {
        sqlx::query(statement)
            .execute(pool)
            .await
            .map_err(|e| e.to_string())?;
    }
    Ok(())
}

/// The requests of each kind of query, for persons spread over the population whose names are
/// in characters.
fn queries(people: &[Filled], page_size: i32) -> Vec<(&'static str, Vec<SearchPersonsRequest>)> {
    let han = |name: &str| name.chars().all(|c| ('\u{4e00}'..='\u{9fff}').contains(&c));
    let sample: Vec<&Filled> = (0..2_000usize)
        .map(|i| &people[i.wrapping_mul(2_654_435_761) % people.len()])
        .filter(|p| han(&p.name))
        .collect();
    let request = |name: String, birth_date: String| SearchPersonsRequest {
        name,
        birth_date,
        page_size,
        ..Default::default()
    };
    let spellings = |p: &Filled| -> Vec<String> {
        hie_population::domain::compare::pinyin_readings(&p.name)
            .into_iter()
            .map(|r| r.first().copied().unwrap_or("").to_owned())
            .collect()
    };
    let capitalised = |s: &str| {
        let mut chars = s.chars();
        chars
            .next()
            .map(|c| c.to_uppercase().chain(chars).collect::<String>())
            .unwrap_or_default()
    };
    vec![
        (
            "characters",
            sample
                .iter()
                .map(|p| request(p.name.clone(), String::new()))
                .collect(),
        ),
        (
            "pinyin",
            sample
                .iter()
                .map(|p| request(spellings(p).concat(), String::new()))
                .collect(),
        ),
        (
            "pinyin_spaced_capitalised",
            sample
                .iter()
                .map(|p| {
                    let words: Vec<String> = spellings(p).iter().map(|s| capitalised(s)).collect();
                    request(words.join(" "), String::new())
                })
                .collect(),
        ),
        (
            "initials_with_birth_date",
            sample
                .iter()
                .filter_map(|p| {
                    let initials: String = spellings(p).iter().filter_map(|s| s.chars().next()).collect();
                    Some(request(initials, p.birth_date.clone()?))
                })
                .collect(),
        ),
    ]
}

fn search_call(
    requests: std::sync::Arc<Vec<SearchPersonsRequest>>,
) -> impl Fn(tonic::transport::Channel, usize) -> CallFuture + Clone {
    move |channel, n| {
        let request = requests[n % requests.len()].clone();
        Box::pin(async move {
            PopulationRegistryClient::new(channel)
                .search_persons(as_clerk(request))
                .await
                .map(|_| ())
                .map_err(|status| format!("{}: {}", status.code(), status.message()))
        })
    }
}

async fn search_on(url: &str, args: &SearchArgs) -> Result<SearchFigures, String> {
    let (settings, _keys) = scratch_settings(url)?;
    let exchange = Exchange::open(&settings).await.map_err(|e| e.to_string())?;
    register_prefecture_organisations(&exchange).await?;
    eprintln!("hie bench: generating {} persons", args.persons);
    let people = population(args.persons);
    let started = Instant::now();
    fill(&exchange, &people).await?;
    let fill_seconds = started.elapsed().as_secs_f64();
    let (keys,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM name_search_keys")
        .fetch_one(exchange.database.pool())
        .await
        .map_err(|e| e.to_string())?;
    let server = exchange
        .clone()
        .start(loopback())
        .await
        .map_err(|e| e.to_string())?;
    let channels = connect(&server.url(), args.connections, None).await?;
    let duration = Duration::from_secs(args.seconds);
    let concurrency = args.concurrency;
    measure(&channels, concurrency, Duration::from_secs(1), health_call).await;
    eprintln!("hie bench: the empty call");
    let empty_call_alone = measure(&channels, 1, duration, health_call).await;
    let empty_call_busy = measure(&channels, concurrency, duration, health_call).await;
    let mut figures = Vec::new();
    for (query, requests) in queries(&people, args.page_size) {
        let requests = std::sync::Arc::new(requests);
        // How many persons a page holds, over the first hundred queries.
        let mut found = 0usize;
        let probes = requests.len().min(100);
        let mut client = PopulationRegistryClient::new(channels[0].clone());
        for request in requests.iter().take(probes) {
            found += client
                .search_persons(as_clerk(request.clone()))
                .await
                .map_err(|e| format!("{query}: {e}"))?
                .into_inner()
                .persons
                .len();
        }
        eprintln!("hie bench: {query}");
        let alone = measure(&channels, 1, duration, search_call(requests.clone())).await;
        let busy = measure(&channels, concurrency, duration, search_call(requests.clone())).await;
        let p99_ratio = |calls: &CallFigures, empty: &CallFigures| {
            ratio(calls.p99_microseconds as f64, empty.p99_microseconds as f64)
        };
        figures.push(QueryFigures {
            query,
            example: requests.first().map(|r| r.name.clone()).unwrap_or_default(),
            alone_p99_to_empty_call_p99: p99_ratio(&alone, &empty_call_alone),
            busy_p99_to_empty_call_p99: p99_ratio(&busy, &empty_call_busy),
            alone,
            busy,
            mean_persons_per_page: found as f64 / probes.max(1) as f64,
        });
    }
    server.stop().await.map_err(|e| e.to_string())?;
    exchange.database.close().await;
    Ok(SearchFigures {
        benchmark: "search",
        backend: "postgres",
        cores: std::thread::available_parallelism().map_or(0, |n| n.get()),
        persons: people.len(),
        name_search_keys: keys,
        fill_seconds,
        concurrency,
        empty_call_alone,
        empty_call_busy,
        queries: figures,
        target_p99_microseconds: 10_000,
    })
}
