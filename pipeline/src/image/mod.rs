//! The build and push stages: the backend image built with the Docker Engine from a
//! streamed context, pushed to ECR (or the configured registry).

pub mod context;
