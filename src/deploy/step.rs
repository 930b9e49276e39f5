//! The steps bgd takes, by name. `plan` decides which steps a command takes and says what
//! each will do; `Run::execute` performs them in that order and reports each one as it starts
//! and ends (the `step` events of `--json`). `deploy --plan` prints the same list: a plan is
//! the list rendered, never a text written beside the engine.

/// What a step does. `name` is the `step` of its `--json` events.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StepKind {
    /// pull the image (it is not on the Docker host)
    Pull,
    /// create the app network
    Network,
    /// create the nginx container, or connect it to the app network
    Lb,
    /// take the deploy lock, read the host and nginx's version
    Prepare,
    /// remove leftovers of killed runs; give the live release its own names back
    Tidy,
    /// rename the parked release aside while the candidate holds its color
    SetAside,
    /// create and start the candidate's replicas
    Start,
    /// start the replicas of a release parked stopped
    StartParked,
    /// route the preview listener to the release about to go live
    Preview,
    /// every replica passes readiness, one by one
    Readiness,
    /// the migration hook
    Migrate,
    /// the live release still works after the migration
    Compatibility,
    /// the smoke probes through the preview listener
    Smoke,
    /// the candidate's containers are the ones the gates proved, and match bgd.yaml
    Drift,
    /// the validated, lossless switch, confirmed through the live listener
    Switch,
    /// remove the parked release set aside: the candidate holds its color for good
    DropParked,
    /// probe the new live color through the live listener for `switch.verify`
    Verify,
    /// stop the old color (park.mode: stopped)
    Park,
}

impl StepKind {
    pub fn name(self) -> &'static str {
        match self {
            StepKind::Pull => "pull",
            StepKind::Network => "network",
            StepKind::Lb => "lb",
            StepKind::Prepare => "prepare",
            StepKind::Tidy => "tidy",
            StepKind::SetAside => "set-aside",
            StepKind::Start | StepKind::StartParked => "start",
            StepKind::Preview => "preview",
            StepKind::Readiness => "readiness",
            StepKind::Migrate => "migrate",
            StepKind::Compatibility => "compatibility",
            StepKind::Smoke => "smoke",
            StepKind::Drift => "drift",
            StepKind::Switch => "switch",
            StepKind::DropParked => "drop-parked",
            StepKind::Verify => "verify",
            StepKind::Park => "park",
        }
    }

    /// Whether live traffic may already be on the new color when this step runs.
    pub fn after_switch(self) -> bool {
        matches!(
            self,
            StepKind::DropParked | StepKind::Verify | StepKind::Park
        )
    }
}

/// One step of a plan: what it is, and what it will do, in words an operator reads.
#[derive(Debug, Clone, PartialEq)]
pub struct Step {
    pub kind: StepKind,
    pub text: String,
}

impl Step {
    pub fn new(kind: StepKind, text: impl Into<String>) -> Step {
        Step {
            kind,
            text: text.into(),
        }
    }
}
