//! Packet-fixture tables: each row is a frame, the verdict and output expected, and the
//! counters it must move by one (every other counter must stay still). Rows run in order
//! against one harness, so a row may rely on the connection-table entries earlier rows made.

use lb_common::counters::Counter;

use crate::xdp::{XdpAction, XdpHarness};

/// What the program must leave in the frame.
pub enum Output {
    /// The frame, byte for byte as it came.
    Unchanged,
    /// Exactly these bytes (built independently, checksums included).
    Bytes(Vec<u8>),
}

/// Something to do to the harness before a row runs (change a map, as VRRP or a config
/// reload would).
pub type Setup = Box<dyn Fn(&mut XdpHarness)>;

/// One row.
pub struct Fixture {
    /// What the row checks.
    pub description: String,
    /// The frame given to the program.
    pub input: Vec<u8>,
    /// The verdict, or `None` when the kernel must refuse to run the program on the frame.
    pub action: Option<XdpAction>,
    /// The frame expected back.
    pub output: Output,
    /// Counters that must move by exactly one.
    pub counters: Vec<Counter>,
    /// Runs before the frame is sent.
    pub setup: Option<Setup>,
}

impl Fixture {
    /// A row expecting `action` and `output`.
    pub fn new(
        description: impl Into<String>,
        input: Vec<u8>,
        action: XdpAction,
        output: Output,
        counters: &[Counter],
    ) -> Self {
        Fixture {
            description: description.into(),
            input,
            action: Some(action),
            output,
            counters: counters.to_vec(),
            setup: None,
        }
    }

    /// A row expecting the frame passed untouched.
    pub fn pass(description: impl Into<String>, input: Vec<u8>, counters: &[Counter]) -> Self {
        Self::new(
            description,
            input,
            XdpAction::Pass,
            Output::Unchanged,
            counters,
        )
    }

    /// A row whose frame the kernel refuses to run at all (shorter than an Ethernet header).
    pub fn refused(description: impl Into<String>, input: Vec<u8>) -> Self {
        Fixture {
            description: description.into(),
            input,
            action: None,
            output: Output::Unchanged,
            counters: Vec::new(),
            setup: None,
        }
    }

    /// Adds a setup step.
    pub fn after(mut self, setup: impl Fn(&mut XdpHarness) + 'static) -> Self {
        self.setup = Some(Box::new(setup));
        self
    }
}

/// Runs every row and panics with one line per failing row.
pub fn run_all(harness: &mut XdpHarness, rows: &[Fixture]) {
    let mut failures = Vec::new();
    for fixture in rows {
        if let Some(setup) = &fixture.setup {
            setup(harness);
        }
        let before = harness.counters().expect("read counters");
        let result = harness
            .run(&fixture.input)
            .unwrap_or_else(|e| panic!("{}: {e:?}", fixture.description));
        let after = harness.counters().expect("read counters");
        let mut problems = Vec::new();
        let action = result.as_ref().map(|r| r.action);
        if action != fixture.action {
            problems.push(format!("action {action:?}, expected {:?}", fixture.action));
        }
        if let Some(result) = &result {
            let expected = match &fixture.output {
                Output::Unchanged => &fixture.input,
                Output::Bytes(bytes) => bytes,
            };
            if &result.output != expected {
                problems.push(format!(
                    "output differs:\n    got      {}\n    expected {}",
                    hex(&result.output),
                    hex(expected)
                ));
            }
        }
        for (i, counter) in Counter::ALL.iter().enumerate() {
            let expected = u64::from(fixture.counters.contains(counter));
            let moved = after[i] - before[i];
            if moved != expected {
                problems.push(format!(
                    "counter {} moved by {moved}, expected {expected}",
                    counter.name()
                ));
            }
        }
        if !problems.is_empty() {
            failures.push(format!("{}: {}", fixture.description, problems.join("; ")));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} fixtures failed:\n{}",
        failures.len(),
        rows.len(),
        failures.join("\n")
    );
    println!("{} fixtures passed", rows.len());
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
