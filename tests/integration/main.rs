//! Integration tests: one binary (to keep builds lean) that drives the real `conveyor` executable and the
//! library from outside.

mod common;
mod validate_and_list;
