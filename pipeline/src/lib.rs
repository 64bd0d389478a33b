//! Build, bundle and deploy Antenna to AWS Elastic Beanstalk.
//!
//! The `xtask` binary is a thin CLI over this library: each command builds a typed request
//! and calls one function here. Stages are data ([`stages::Stage`]); the I/O boundaries
//! (Docker Engine, AWS, GitHub, HTTP, Redis) are the only places with traits.

pub mod aws;
pub mod bundle;
pub mod config;
pub mod deploy;
pub mod docker;
pub mod dockerrun;
pub mod docs;
pub mod doctor;
pub mod eb;
pub mod envprops;
pub mod github;
pub mod iam;
pub mod image;
pub mod instance;
pub mod lint;
pub mod local;
pub mod ops;
pub use checks::output;
pub mod preview;
pub mod release;
pub mod retry;
pub mod stages;
pub mod template;
pub mod verify;
