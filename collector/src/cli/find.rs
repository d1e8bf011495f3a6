//! `kiroku find`: records by id, trace id, output text, model or time.

use std::path::PathBuf;
use std::process::ExitCode;

use kiroku_schemas::AuditRecord;
use kiroku_schemas::record::RecordView;

use crate::archive::{Archive, Filter};
use crate::error::CliError;

/// Arguments.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The archive directory.
    #[arg(long, env = "KIROKU_ARCHIVE")]
    archive: Option<PathBuf>,
    /// Record id (a UUID in either case).
    #[arg(long, value_parser = super::record_id)]
    record_id: Option<String>,
    /// W3C trace id (32 hex digits, any case), or a whole `traceparent` value.
    #[arg(long, value_parser = trace_id)]
    trace_id: Option<String>,
    /// A file holding an output text: which inference produced exactly this text?
    #[arg(long)]
    content: Option<PathBuf>,
    #[command(flatten)]
    sel: super::Selection,
    /// One JSON record per line.
    #[arg(long)]
    json: bool,
}

pub(super) fn run(a: Args) -> Result<ExitCode, CliError> {
    let archive = Archive::open(&super::required(a.archive, "--archive", "KIROKU_ARCHIVE")?)?;
    let content = match &a.content {
        Some(p) => Some(std::fs::read(p).map_err(|e| CliError::io(p, e))?),
        None => None,
    };
    let sel = a.sel.checked()?;
    let mut filter = Filter {
        record_id: a.record_id,
        trace_id: a.trace_id,
        output_digest: content.as_deref().map(kiroku_schemas::digest::blake3_hex),
        model: sel.model,
        from: sel.from,
        to: sel.to,
    };
    let mut n = print_matches(&archive, &filter, a.json)?;
    // The digest is of the exact output text. A file saved by an editor or `echo` ends
    // with a newline the model did not write: with no exact match, try without it, and
    // say so.
    let trimmed = content.as_deref().map(|c| (c.trim_ascii_end(), c.len())).filter(|(t, len)| t.len() < *len);
    if let (0, Some((t, _))) = (n, trimmed) {
        filter.output_digest = Some(kiroku_schemas::digest::blake3_hex(t));
        n = print_matches(&archive, &filter, a.json)?;
        if n > 0 {
            say!("no exact match for the file; these match its text without the trailing whitespace");
        }
    }
    if !a.json {
        say!("{n} record(s)");
    }
    Ok(ExitCode::SUCCESS)
}

/// Print the records `filter` matches, as they are found (a broad query, a model or a
/// month, never has to fit in memory); how many.
fn print_matches(archive: &Archive, filter: &Filter, json: bool) -> Result<u64, CliError> {
    let corrupt = |c: &crate::archive::ChainCols, e: &dyn std::fmt::Display| {
        CliError::Corrupt(format!("chain {} seq {}: {e}", c.chain_id, c.seq))
    };
    archive.find_each(filter, |c| {
        if json {
            // The exact bytes, once they are known to be a record.
            RecordView::parse(&c.payload).map_err(|e| corrupt(&c, &e))?;
            out!("{}", String::from_utf8_lossy(&c.payload))?;
        } else {
            let r = AuditRecord::from_json(&c.payload).map_err(|e| corrupt(&c, &e))?;
            out!("{}", super::output::line(&c, &r))?;
        }
        Ok(())
    })
}

/// A trace id as the journal records it (lowercase hex), from what an investigator
/// pastes: the id in either case, or a `traceparent` header (`00-<id>-<span>-01`). A
/// malformed one is refused rather than matching nothing, which would read as "no
/// such inference".
fn trace_id(s: &str) -> Result<String, String> {
    let s = s.trim();
    let id = match s.split('-').collect::<Vec<_>>()[..] {
        [_, id, _, _] => id,
        _ => s,
    };
    if id.len() == 32 && id.bytes().all(|b| b.is_ascii_hexdigit()) && id.bytes().any(|b| b != b'0') {
        Ok(id.to_ascii_lowercase())
    } else {
        Err(format!("{s:?} is not a W3C trace id (32 hex digits, not all zero) nor a traceparent"))
    }
}

#[cfg(test)]
mod tests {
    use super::trace_id;

    #[test]
    fn trace_ids_are_read_as_pasted_and_malformed_ones_refused() {
        let id = "4bf92f3577b34da6a3ce929d0e0e4736";
        assert_eq!(trace_id(id).as_deref(), Ok(id));
        assert_eq!(trace_id(&id.to_ascii_uppercase()).as_deref(), Ok(id));
        assert_eq!(trace_id(&format!(" 00-{id}-00f067aa0ba902b7-01\n")).as_deref(), Ok(id));
        for bad in ["zz", &id[1..], &format!("{id}0"), "00000000000000000000000000000000", "00-xyz-00f067aa0ba902b7-01"]
        {
            assert!(trace_id(bad).is_err(), "{bad:?}");
        }
    }
}
