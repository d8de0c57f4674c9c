//! `jetstream-operator streams`: what JetStream itself holds, for people checking the
//! operator's work (the demo prints it).

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;

use crate::controller::connect::{DefaultConnection, FileCache, Origin, default_layer, merge};
use crate::jetstream::api::JsApi;
use crate::jetstream::connection::Pool;
use crate::jetstream::owner::OWNER_KEY;
use crate::metrics::Metrics;

/// A table of every stream on the default connection.
pub async fn streams_table(conn: &DefaultConnection) -> anyhow::Result<String> {
    let layer = default_layer(&FileCache::default(), conn).await?;
    let resolved = merge(&[(Origin::Default, layer)], None)?;
    let (tx, _rx) = mpsc::unbounded_channel();
    let pool = Pool::new(tx, 1, Duration::from_secs(10));
    let c = pool.get(&resolved.settings).await?;
    let js = JsApi::new(
        c,
        resolved.prefix,
        Duration::from_secs(10),
        Arc::new(Metrics::new()),
    );
    let (mut streams, _) = js.list_streams().await?;
    streams.sort_by(|a, b| a.config.name.cmp(&b.config.name));
    let mut rows = vec![[
        "STREAM".to_string(),
        "SUBJECTS".into(),
        "STORAGE".into(),
        "RETENTION".into(),
        "MESSAGES".into(),
        "OWNER".into(),
    ]];
    for s in &streams {
        rows.push([
            s.config.name.clone(),
            s.config.subjects.join(","),
            s.config.storage.clone(),
            s.config.retention.clone(),
            s.state
                .as_ref()
                .map(|st| st.messages)
                .unwrap_or(0)
                .to_string(),
            s.config
                .metadata
                .get(OWNER_KEY)
                .cloned()
                .unwrap_or_else(|| "-".into()),
        ]);
    }
    let widths: Vec<usize> = (0..6)
        .map(|i| rows.iter().map(|r| r[i].len()).max().unwrap_or(0))
        .collect();
    let mut out = String::new();
    for r in rows {
        let line: Vec<String> = r
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        out.push_str(line.join("   ").trim_end());
        out.push('\n');
    }
    Ok(out)
}
