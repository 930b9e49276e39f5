//! Deploying: observe (host -> state), plan (pure decisions), engine (runs the steps and
//! undoes them on failure).

pub mod drift;
pub mod engine;
pub mod observe;
pub mod plan;

pub use engine::{Deployed, Engine, PlanReport, SwitchReport};
pub use observe::{observe, Observed};
