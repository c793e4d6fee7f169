//! The journal's encoding: private, versioned, checksummed.
//!
//! The public records ([`RunRecord`], [`StepRecord`], [`InboxEvent`]) are read views; what a
//! store writes is built here, from private types whose layout is frozen with the format
//! (`records.rs`), so renaming a public field never changes a file.
//!
//! Version 2, every record: one tag byte ([`RECORD_V2`], never the first byte of JSON text),
//! a CRC-32 of the record's key and body (little endian), then the body. A run's and an
//! event's body is the JSON of its wire type. A step's body is binary, since steps are most of
//! a journal and are read on every resume: status byte, name, attempts, start and end times,
//! delivery position (LEB128 varints, strings length-prefixed), the value's JSON bytes, then
//! the rarely present fields (error, usage, attempt log) as JSON, or nothing.
//!
//! Version 1 (journals written before this module) stored each record as the JSON of the public
//! type, with no checksum. Those records still read, through the same wire types; a journal
//! that has them says so in its meta table, and in a journal that has none a record without
//! the version-2 tag is damage.
//!
//! Decoding never trusts a length or a number from disk: every length is checked against the
//! bytes that remain before anything is allocated, and every failure is
//! [`StoreError::CorruptRecord`] naming the run and the record.

mod records;

use serde_json::value::RawValue;

use self::records::{
    StepHeader, WireEvent, WireRun, WireStepExtras, WireStepStatus, WireStepV1, step_from_parts,
};
use crate::error::StoreError;
use crate::journal::{InboxEvent, RunRecord, StepRecord};

/// The first byte of every version-2 record.
const RECORD_V2: u8 = 0xF2;
/// Tag byte plus checksum.
const ENVELOPE_LEN: usize = 5;
/// How a step's value is stored: absent, JSON text, or a JSON array of integers 0 to 255 (what
/// serde makes of `Vec<u8>` and `[u8; N]`) as its bytes, one byte each instead of up to four.
const VALUE_NONE: u8 = 0;
const VALUE_JSON: u8 = 1;
const VALUE_BYTES: u8 = 2;
/// Arrays shorter than this stay JSON: the gain would not pay for the scan.
const BYTES_MIN_LEN: usize = 64;

/// Which record formats a journal may hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Accept {
    /// Only version-2 records: the journal was created at version 2.
    V2,
    /// Version-1 records too: the journal was created at version 1 and upgraded.
    V1AndV2,
}

/// A run's record, encoded.
pub(crate) fn encode_run(run: &RunRecord) -> Result<Vec<u8>, StoreError> {
    let body = serde_json::to_vec(&WireRun::from(run))
        .map_err(|e| encode_error(run_label(&run.run_id), e))?;
    Ok(seal(&[run.run_id.as_bytes()], &body))
}

/// A step's record, encoded.
pub(crate) fn encode_step(run_id: &str, step: &StepRecord) -> Result<Vec<u8>, StoreError> {
    let mut body = Vec::with_capacity(
        32 + step.name.len() + step.output.as_ref().map_or(0, |o| o.get().len()),
    );
    body.push(WireStepStatus::from(step.status).to_byte());
    put_bytes(&mut body, step.name.as_bytes());
    put_varint(&mut body, u64::from(step.attempts));
    put_varint(&mut body, step.started_at_us);
    put_varint(&mut body, step.finished_at_us);
    put_varint(&mut body, step.delivery.map_or(0, |d| d.saturating_add(1)));
    match &step.output {
        None => body.push(VALUE_NONE),
        Some(value) => match byte_array(value.get()) {
            Some(bytes) => {
                body.push(VALUE_BYTES);
                put_bytes(&mut body, &bytes);
            }
            None => {
                body.push(VALUE_JSON);
                put_bytes(&mut body, value.get().as_bytes());
            }
        },
    }
    let extras = WireStepExtras::of(step);
    if !extras.is_empty() {
        serde_json::to_writer(&mut body, &extras)
            .map_err(|e| encode_error(step_label(run_id, step.seq), e))?;
    }
    Ok(seal(&[run_id.as_bytes(), &step.seq.to_le_bytes()], &body))
}

/// An event's record, encoded.
pub(crate) fn encode_event(event: &InboxEvent) -> Result<Vec<u8>, StoreError> {
    let body = serde_json::to_vec(&WireEvent::from(event))
        .map_err(|e| encode_error(event_label(&event.run_id, event.arrival), e))?;
    Ok(seal(
        &[event.run_id.as_bytes(), &event.arrival.to_le_bytes()],
        &body,
    ))
}

/// Decodes the record stored under run id `run_id`.
pub(crate) fn decode_run(
    run_id: &str,
    bytes: &[u8],
    accept: Accept,
) -> Result<RunRecord, StoreError> {
    let label = || run_label(run_id);
    let wire: WireRun = match open(&[run_id.as_bytes()], bytes, accept, label)? {
        Body::V2(body) => serde_json::from_slice(body).map_err(|e| corrupt(label(), e))?,
        Body::V1(json) => serde_json::from_slice(json).map_err(|e| corrupt(label(), e))?,
    };
    if wire.run_id() != run_id {
        return Err(corrupt(
            label(),
            format!("the record is of run {:?}", wire.run_id()),
        ));
    }
    Ok(wire.into())
}

/// Decodes the record stored under (`run_id`, `seq`).
pub(crate) fn decode_step(
    run_id: &str,
    seq: u64,
    bytes: &[u8],
    accept: Accept,
) -> Result<StepRecord, StoreError> {
    let label = || step_label(run_id, seq);
    match open(
        &[run_id.as_bytes(), &seq.to_le_bytes()],
        bytes,
        accept,
        label,
    )? {
        Body::V1(json) => {
            let wire: WireStepV1 = serde_json::from_slice(json).map_err(|e| corrupt(label(), e))?;
            if wire.seq != seq {
                return Err(corrupt(
                    label(),
                    format!("the record says it is step #{}", wire.seq),
                ));
            }
            Ok(wire.into())
        }
        Body::V2(body) => decode_step_body(seq, body).map_err(|detail| corrupt(label(), detail)),
    }
}

/// Decodes the event stored under (`run_id`, `arrival`).
pub(crate) fn decode_event(
    run_id: &str,
    arrival: u64,
    bytes: &[u8],
    accept: Accept,
) -> Result<InboxEvent, StoreError> {
    let label = || event_label(run_id, arrival);
    let wire: WireEvent = match open(
        &[run_id.as_bytes(), &arrival.to_le_bytes()],
        bytes,
        accept,
        label,
    )? {
        Body::V2(body) | Body::V1(body) => {
            serde_json::from_slice(body).map_err(|e| corrupt(label(), e))?
        }
    };
    if wire.key() != (run_id, arrival) {
        return Err(corrupt(label(), "the record is stored under another key"));
    }
    Ok(wire.into())
}

enum Body<'a> {
    V1(&'a [u8]),
    V2(&'a [u8]),
}

/// Checks a record's envelope and checksum; returns its body.
fn open<'a>(
    key: &[&[u8]],
    bytes: &'a [u8],
    accept: Accept,
    label: impl Fn() -> String,
) -> Result<Body<'a>, StoreError> {
    match bytes.first() {
        Some(&RECORD_V2) => {
            let Some((stored, body)) = bytes.get(1..ENVELOPE_LEN).zip(bytes.get(ENVELOPE_LEN..))
            else {
                return Err(corrupt(label(), "the record is shorter than its envelope"));
            };
            let stored = u32::from_le_bytes([stored[0], stored[1], stored[2], stored[3]]);
            let computed = checksum(key, body);
            if stored != computed {
                return Err(corrupt(
                    label(),
                    format!(
                        "checksum mismatch (stored {stored:08x}, computed {computed:08x}): the bytes changed after they were written"
                    ),
                ));
            }
            Ok(Body::V2(body))
        }
        _ if accept == Accept::V1AndV2 => Ok(Body::V1(bytes)),
        Some(other) => Err(corrupt(label(), format!("unknown record tag {other:#04x}"))),
        None => Err(corrupt(label(), "the record is empty")),
    }
}

fn decode_step_body(seq: u64, body: &[u8]) -> Result<StepRecord, String> {
    let mut reader = Reader { bytes: body };
    let status_byte = reader.byte()?;
    let status = WireStepStatus::from_byte(status_byte)
        .ok_or_else(|| format!("unknown step status {status_byte}"))?;
    let name = String::from_utf8(reader.bytes()?.to_vec())
        .map_err(|_| "the step name is not UTF-8".to_owned())?;
    let attempts = u32::try_from(reader.varint()?)
        .map_err(|_| "the attempt count is out of range".to_owned())?;
    let started_at_us = reader.varint()?;
    let finished_at_us = reader.varint()?;
    let delivery = reader.varint()?.checked_sub(1);
    let output = match reader.byte()? {
        VALUE_NONE => None,
        VALUE_BYTES => Some(byte_array_json(reader.bytes()?)?),
        VALUE_JSON => {
            let json = std::str::from_utf8(reader.bytes()?)
                .map_err(|_| "the value is not UTF-8".to_owned())?;
            Some(
                serde_json::from_str::<Box<RawValue>>(json)
                    .map_err(|e| format!("the value is not JSON: {e}"))?,
            )
        }
        other => return Err(format!("unknown value tag {other}")),
    };
    let extras = if reader.bytes.is_empty() {
        WireStepExtras::default()
    } else {
        serde_json::from_slice(reader.bytes)
            .map_err(|e| format!("its error, usage or attempts: {e}"))?
    };
    Ok(step_from_parts(
        seq,
        StepHeader {
            status,
            name,
            attempts,
            started_at_us,
            finished_at_us,
            delivery,
        },
        output,
        extras,
    ))
}

/// The bytes of `json` when it is an array of integers 0 to 255, written the way serde_json
/// writes them (no spaces, no leading zeros), so that [`byte_array_json`] gives back the very
/// same text.
fn byte_array(json: &str) -> Option<Vec<u8>> {
    let inner = json.strip_prefix('[')?.strip_suffix(']')?;
    if inner.len() < BYTES_MIN_LEN {
        return None;
    }
    let mut bytes = Vec::with_capacity(inner.len() / 2);
    for number in inner.split(',') {
        let canonical = match number.as_bytes() {
            [b'0'] => true,
            [b'1'..=b'9', rest @ ..] => rest.len() <= 2 && rest.iter().all(u8::is_ascii_digit),
            _ => false,
        };
        if !canonical {
            return None;
        }
        bytes.push(number.parse::<u8>().ok()?);
    }
    Some(bytes)
}

/// The JSON text of a byte array stored as bytes.
fn byte_array_json(bytes: &[u8]) -> Result<Box<RawValue>, String> {
    let mut json = String::with_capacity(bytes.len() * 4 + 2);
    json.push('[');
    for (i, &byte) in bytes.iter().enumerate() {
        if i > 0 {
            json.push(',');
        }
        if byte >= 100 {
            json.push(char::from(b'0' + byte / 100));
        }
        if byte >= 10 {
            json.push(char::from(b'0' + byte / 10 % 10));
        }
        json.push(char::from(b'0' + byte % 10));
    }
    json.push(']');
    RawValue::from_string(json).map_err(|e| format!("the byte array's JSON: {e}"))
}

/// Frames `body` with the version-2 tag and the checksum of `key` and `body`.
fn seal(key: &[&[u8]], body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(ENVELOPE_LEN + body.len());
    out.push(RECORD_V2);
    out.extend_from_slice(&checksum(key, body).to_le_bytes());
    out.extend_from_slice(body);
    out
}

/// The checksum covers the key too, so a record found under another key (a damaged key, or
/// bytes copied between records) fails it.
fn checksum(key: &[&[u8]], body: &[u8]) -> u32 {
    let mut hasher = crc32fast::Hasher::new();
    for part in key {
        hasher.update(&(part.len() as u64).to_le_bytes());
        hasher.update(part);
    }
    hasher.update(body);
    hasher.finalize()
}

fn put_varint(out: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        out.push((value as u8) | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

fn put_bytes(out: &mut Vec<u8>, bytes: &[u8]) {
    put_varint(out, bytes.len() as u64);
    out.extend_from_slice(bytes);
}

/// Reads a version-2 body; every read checks what remains first.
struct Reader<'a> {
    bytes: &'a [u8],
}

impl<'a> Reader<'a> {
    fn byte(&mut self) -> Result<u8, String> {
        let (&first, rest) = self.bytes.split_first().ok_or("the record ends early")?;
        self.bytes = rest;
        Ok(first)
    }

    fn varint(&mut self) -> Result<u64, String> {
        let mut value = 0u64;
        for shift in (0..64).step_by(7) {
            let byte = self.byte()?;
            value |= u64::from(byte & 0x7F) << shift;
            if byte & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err("a number is longer than 64 bits".into())
    }

    fn bytes(&mut self) -> Result<&'a [u8], String> {
        let len = self.varint()?;
        let len = usize::try_from(len)
            .ok()
            .filter(|&len| len <= self.bytes.len())
            .ok_or_else(|| format!("a length of {len} bytes runs past the record's end"))?;
        let (taken, rest) = self.bytes.split_at(len);
        self.bytes = rest;
        Ok(taken)
    }
}

fn run_label(run_id: &str) -> String {
    format!("run {run_id:?}")
}

fn step_label(run_id: &str, seq: u64) -> String {
    format!("run {run_id:?} step #{seq}")
}

fn event_label(run_id: &str, arrival: u64) -> String {
    format!("run {run_id:?} event #{arrival}")
}

fn corrupt(record: String, detail: impl std::fmt::Display) -> StoreError {
    StoreError::CorruptRecord {
        record,
        detail: detail.to_string(),
    }
}

fn encode_error(record: String, error: serde_json::Error) -> StoreError {
    StoreError::Backend(format!("cannot encode {record}: {error}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::budget::Usage;
    use crate::error::{StepError, StepErrorKind};
    use crate::journal::{AttemptRecord, StepStatus};

    fn raw(json: &str) -> Box<RawValue> {
        RawValue::from_string(json.to_owned()).expect("valid JSON")
    }

    fn failed_step() -> StepRecord {
        let mut step = StepRecord::completed(7, "summarize", raw(r#"{"text":"4000321"}"#));
        step.status = StepStatus::Failed;
        step.attempts = 2;
        step.delivery = Some(3);
        step.output = None;
        step.error = Some(StepError {
            step: "summarize".into(),
            kind: StepErrorKind::RateLimited,
            message: "429".into(),
            attempts: 2,
        });
        step.usage = Usage::tokens("model-a", 10, 20).with_cost_usd(0.5);
        step.attempt_log = vec![AttemptRecord {
            attempt: 1,
            started_at_us: 1,
            finished_at_us: 2,
            error: None,
            wait_after_us: 1_000,
        }];
        step
    }

    /// Every record survives its encoding exactly.
    #[test]
    fn records_read_back_as_they_were_written() {
        for step in [
            StepRecord::completed(0, "plan", raw(r#"["a",1,null]"#)),
            StepRecord::completed(1, "unit", raw("null")),
            failed_step(),
        ] {
            let bytes = encode_step("run-1", &step).unwrap();
            let back = decode_step("run-1", step.seq, &bytes, Accept::V2).unwrap();
            assert_eq!(format!("{back:?}"), format!("{step:?}"));
        }
        let mut run = RunRecord::new("run-1", "agent", 42, raw(r#"["goal"]"#));
        run.tags.insert("user".into(), "ann".into());
        let back = decode_run("run-1", &encode_run(&run).unwrap(), Accept::V2).unwrap();
        assert_eq!(format!("{back:?}"), format!("{run:?}"));
    }

    /// A flipped bit anywhere in a record, or a record read under another key, is an error
    /// naming the record: never different data (a sweep found one flip in five served as other
    /// data before records carried a checksum).
    #[test]
    fn every_flipped_bit_and_every_moved_record_is_an_error() {
        let step = failed_step();
        let bytes = encode_step("run-1", &step).unwrap();
        for bit in 0..bytes.len() * 8 {
            let mut flipped = bytes.clone();
            flipped[bit / 8] ^= 1 << (bit % 8);
            let error =
                decode_step("run-1", 7, &flipped, Accept::V2).expect_err("a flipped bit is caught");
            assert!(
                error.to_string().contains(r#"run "run-1" step #7"#),
                "{error}"
            );
        }
        assert!(decode_step("run-1", 8, &bytes, Accept::V2).is_err());
        assert!(decode_step("run-2", 7, &bytes, Accept::V2).is_err());

        let run = RunRecord::new("run-1", "agent", 42, raw(r#"["goal"]"#));
        let bytes = encode_run(&run).unwrap();
        for bit in 0..bytes.len() * 8 {
            let mut flipped = bytes.clone();
            flipped[bit / 8] ^= 1 << (bit % 8);
            assert!(
                decode_run("run-1", &flipped, Accept::V2).is_err(),
                "bit {bit}"
            );
        }
        assert!(decode_run("run-2", &bytes, Accept::V2).is_err());
    }

    /// Lengths and numbers from disk are checked before use: a truncated record, or one
    /// whose length field claims more than there is, is an error, not a panic or a huge
    /// allocation.
    #[test]
    fn truncated_and_overlong_bodies_are_errors() {
        let step = failed_step();
        let bytes = encode_step("run-1", &step).unwrap();
        for len in 0..bytes.len() {
            assert!(decode_step("run-1", 7, &bytes[..len], Accept::V2).is_err());
        }
        // A body whose name length says 2^62 bytes, sealed with a valid checksum.
        let mut body = vec![0u8];
        put_varint(&mut body, 1 << 62);
        let sealed = seal(&[b"run-1", &7u64.to_le_bytes()], &body);
        let error = decode_step("run-1", 7, &sealed, Accept::V2).unwrap_err();
        assert!(error.to_string().contains("runs past"), "{error}");
    }

    /// A byte array (`Vec<u8>`) is stored one byte per element and reads back as the same
    /// JSON text; arrays that are not canonical bytes stay JSON.
    #[test]
    fn byte_arrays_are_stored_as_bytes() {
        let bytes: Vec<u8> = (0..1_000_000u32).map(|i| (i * 7 % 256) as u8).collect();
        let json = serde_json::to_string(&bytes).unwrap();
        let step = StepRecord::completed(0, "download", raw(&json));
        let encoded = encode_step("r", &step).unwrap();
        assert!(
            encoded.len() < bytes.len() + 100,
            "{} bytes for a {}-byte value ({} as JSON)",
            encoded.len(),
            bytes.len(),
            json.len()
        );
        let back = decode_step("r", 0, &encoded, Accept::V2).unwrap();
        assert_eq!(back.output.unwrap().get(), json);
        for not_bytes in [
            format!("[{}256]", "1,".repeat(70)),
            format!("[{}01]", "1,".repeat(70)),
            format!("[{}-1]", "1,".repeat(70)),
            format!("[{} 1]", "1,".repeat(70)),
            "[1,2,3]".to_owned(),
        ] {
            assert_eq!(byte_array(&not_bytes), None, "{not_bytes}");
            if not_bytes.contains("01]") {
                continue; // not JSON either
            }
            let step = StepRecord::completed(0, "x", raw(&not_bytes));
            let back = decode_step("r", 0, &encode_step("r", &step).unwrap(), Accept::V2);
            assert_eq!(back.unwrap().output.unwrap().get(), not_bytes);
        }
    }

    /// A journal created at version 2 holds only version-2 records; one created at version 1
    /// still reads its JSON records.
    #[test]
    fn version_1_records_read_only_in_journals_that_had_them() {
        let v1 = br#"{"seq":0,"name":"plan","status":"completed","attempts":1,"started_at_us":0,"finished_at_us":0,"output":[1]}"#;
        let step = decode_step("r", 0, v1, Accept::V1AndV2).unwrap();
        assert_eq!(step.output.unwrap().get(), "[1]");
        let error = decode_step("r", 0, v1, Accept::V2).unwrap_err();
        assert!(error.to_string().contains("unknown record tag"), "{error}");
    }
}
