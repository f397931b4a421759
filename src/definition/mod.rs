//! Workflow files: their schema, loading and validation.

mod expression;
mod load;
mod model;
mod params;
mod problem;
mod raw;
pub mod schema;
mod secret_reference;
mod size;
mod validate;

pub use expression::{
    MAX_COMPREHENSION_NESTING, MAX_EXPRESSION_DEPTH, MAX_EXPRESSION_LENGTH, MAX_EXPRESSION_NESTING, compile_expression,
    compiled_expression,
};
pub use load::{Catalog, REGISTRY_FILE, load_file, load_folder, parse_workflow};
pub use model::*;
pub use params::{parse_assignments, resolve_declared, resolve_params, typed as typed_param};
pub use problem::{LineIndex, Problem, line_and_column};
pub use secret_reference::{Reference, parse_reference};
pub use size::{format_size, parse_size};
pub use validate::{
    DEFAULT_BACKOFF, DEFAULT_KEEP_RUNS, DEFAULT_MAX_ACTIVE_RUNS, DEFAULT_RETRY_DELAY, MAX_DURATION, MAX_RETRIES,
    coerce, parse_duration,
};

#[cfg(test)]
mod fuzz;
#[cfg(test)]
mod tests;
