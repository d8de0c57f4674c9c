//! Logging setup.

use tracing_subscriber::EnvFilter;

/// Log output format.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable text.
    Text,
    /// One JSON object per line.
    Json,
}

/// Log targets that print credentials at their most detailed levels, with the most
/// detailed level that is still safe: the NATS client traces every CONNECT it writes,
/// token, password, JWT and signature included.
const SECRET_BEARING: [&str; 1] = ["async_nats::connection=debug"];

/// The log filter: `level`, else RUST_LOG, else `info`, never more detailed than
/// [`SECRET_BEARING`] allows for those targets.
pub fn filter(level: Option<&str>) -> EnvFilter {
    let base = match level {
        Some(l) => EnvFilter::new(l),
        None => EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
    };
    SECRET_BEARING
        .iter()
        .filter_map(|d| d.parse().ok())
        .fold(base, |f, d| f.add_directive(d))
}

/// Installs the global subscriber. `level` wins over RUST_LOG; default `info`.
pub fn init(format: LogFormat, level: Option<&str>) {
    let filter = filter(level);
    // Colours only on a terminal: logs collected from a pod must stay plain text.
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    let result = match format {
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
        LogFormat::Text => builder.try_init(),
    };
    if let Err(e) = result {
        eprintln!("logging already initialised: {e}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connect_frames_are_never_traced() {
        for level in [
            "trace",
            "async_nats=trace",
            "trace,async_nats::connection=trace",
        ] {
            let f = filter(Some(level)).to_string();
            assert!(f.contains("async_nats::connection=debug"), "{level}: {f}");
        }
    }
}
