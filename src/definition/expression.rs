//! Compiling CEL expressions (`when`, layer rules and `approval`) within limits, once for validation and
//! again for evaluation, so that a run never parses what validation did not accept.
//!
//! The `cel` parser recurses once per nesting level and per chained operator, and evaluation recurses once
//! per level of the tree it builds; a long enough expression overflows the stack of whatever thread parses
//! or runs it, which aborts the whole process. So: what the parser cannot take is refused before parsing
//! (length, bracket nesting), parsing runs on a thread with a stack sized for the text, and what evaluation
//! cannot take is refused after (tree depth, comprehensions nested in comprehensions).

use cel::Program;
use cel::common::ast::{EntryExpr, Expr, IdedExpr};

/// The longest expression accepted, in characters.
pub const MAX_EXPRESSION_LENGTH: usize = 4096;
/// The deepest nesting of `(`, `[` and `{` accepted (the parser gives up at 96 levels, but overflows a
/// thread's stack well before that in a debug build).
pub const MAX_EXPRESSION_NESTING: usize = 64;
/// The deepest tree accepted: evaluation recurses once per level, on the evaluator's own thread.
pub const MAX_EXPRESSION_DEPTH: usize = 64;
/// Comprehensions (`map`, `filter`, `all`, `exists`, `exists_one`) inside comprehensions: each level
/// multiplies the work by the size of a list, so three deep over a 1000-item input is a billion steps.
pub const MAX_COMPREHENSION_NESTING: usize = 2;

/// How much stack the parser may use on the caller's thread; beyond it, parsing moves to a thread of its
/// own. Callers run on 2 MiB threads (tokio's workers, test threads): this leaves them most of it.
const INLINE_STACK: usize = 512 * 1024;
/// Stack per bracket level and per operator character, measured on cel 0.15 in a release build (about 7.5
/// KiB and 1.5 KiB) with room to spare.
const STACK_PER_LEVEL: usize = 8 * 1024;
const STACK_PER_OPERATOR: usize = 4 * 1024;
/// Unoptimized builds (our tests) use about twenty times the stack per level.
const DEBUG_FACTOR: usize = if cfg!(debug_assertions) { 32 } else { 1 };

const PARSER_FAILED: &str = "the CEL parser failed on it: expected a simpler expression";

/// Compiles a CEL expression for the standard environment, or says why not, quoting the start of it:
/// `bad CEL expression `…`: reason`. The same limits apply wherever it is called, and it never panics
/// or overflows the caller's stack.
pub fn compile_expression(text: &str) -> Result<Program, String> {
    compile(text).map_err(|reason| format!("bad CEL expression `{}`: {reason}", excerpt(text)))
}

/// As [`compile_expression`], for evaluating: an expression is compiled once and kept, not again for each
/// evaluation (a `when` is evaluated for every run, a rule for every item).
pub fn compiled_expression(text: &str) -> Result<std::sync::Arc<Program>, String> {
    use std::collections::HashMap;
    use std::sync::{Arc, Mutex, OnceLock};
    /// Distinct expression texts kept; past this the cache starts again (definitions hold far fewer).
    const KEPT: usize = 1024;
    static PROGRAMS: OnceLock<Mutex<HashMap<String, Arc<Program>>>> = OnceLock::new();
    let programs = PROGRAMS.get_or_init(Default::default);
    if let Some(program) = programs.lock().expect("compiled expressions").get(text) {
        return Ok(program.clone());
    }
    let program = Arc::new(compile_expression(text)?);
    let mut programs = programs.lock().expect("compiled expressions");
    if programs.len() >= KEPT {
        programs.clear();
    }
    programs.insert(text.to_string(), program.clone());
    Ok(program)
}

/// As [`compile_expression`], with the reason only, for messages that name the expression another way.
pub(crate) fn compile(text: &str) -> Result<Program, String> {
    let shape = shape(text)?;
    let program = if shape.stack <= INLINE_STACK {
        // The parser has panicked on odd input before; a panic must not take the caller down with it.
        std::panic::catch_unwind(|| parse(text)).unwrap_or_else(|_| Err(String::from(PARSER_FAILED)))
    } else {
        std::thread::scope(|scope| {
            std::thread::Builder::new()
                .name("cel-compile".into())
                .stack_size(shape.stack * 2 + (1 << 20))
                .spawn_scoped(scope, || parse(text))
                .map_err(|error| format!("cannot start a thread to compile it: {error}"))?
                .join()
                .unwrap_or_else(|_| Err(String::from(PARSER_FAILED)))
        })
    }?;
    Ok(program)
}

/// Parses, then checks the tree; a refused tree is dropped here, where the stack is known to be enough.
fn parse(text: &str) -> Result<Program, String> {
    let program = Program::compile(text).map_err(|errors| syntax_error(text, &errors))?;
    let (depth, comprehensions) = measure(program.expression());
    if depth > MAX_EXPRESSION_DEPTH {
        return Err(format!(
            "it is nested {depth} operations deep; expected at most {MAX_EXPRESSION_DEPTH}: split it into smaller conditions"
        ));
    }
    if comprehensions > MAX_COMPREHENSION_NESTING {
        return Err(format!(
            "it nests comprehensions (`map`, `filter`, `all`, `exists`, `exists_one`) {comprehensions} deep; expected at most {MAX_COMPREHENSION_NESTING}, as each level multiplies the work"
        ));
    }
    Ok(program)
}

fn syntax_error(text: &str, errors: &cel::ParseErrors) -> String {
    let Some(first) = errors.errors.first() else { return String::from("it does not parse") };
    // `pos` is the 1-based line and column in the expression; the line is worth showing only for multi-line text.
    if first.msg.contains("Recursion limit") {
        // The parser's own limit (chained `? :` reach it without brackets) reports itself as a debug dump.
        return String::from("it nests too deeply for the CEL parser: expected fewer nested `? :`, brackets or calls");
    }
    let message = first.msg.trim().replace('\n', " ");
    let message: String = message.chars().take(200).collect();
    if text.contains('\n') {
        format!("{message} (line {}, column {})", first.pos.0, first.pos.1)
    } else {
        format!("{message} (at character {})", first.pos.1)
    }
}

struct Shape {
    /// Stack the parser may need, from a count that treats every bracket and operator as a level.
    stack: usize,
}

/// Refuses what is too long or nested too deeply, in one pass that stops at the first problem.
fn shape(text: &str) -> Result<Shape, String> {
    let mut nesting = 0usize;
    let mut raw_nesting = 0usize;
    let mut deepest_raw = 0usize;
    let mut operators = 0usize;
    let mut quote: Option<(char, bool)> = None; // the quote character, and whether it is tripled
    let mut escaped = false;
    let chars: Vec<char> = text.chars().take(MAX_EXPRESSION_LENGTH + 1).collect();
    let mut index = 0;
    while index < chars.len() {
        let c = chars[index];
        // The raw counts ignore string literals on purpose: they size the parser's stack, and must be an
        // upper bound even if this scan misreads a literal.
        match c {
            '(' | '[' | '{' => {
                raw_nesting += 1;
                deepest_raw = deepest_raw.max(raw_nesting);
                operators += 1;
            }
            ')' | ']' | '}' => raw_nesting = raw_nesting.saturating_sub(1),
            '.' | '+' | '-' | '*' | '/' | '%' | '<' | '>' | '=' | '!' | '&' | '|' | '?' | ':' | ',' => operators += 1,
            _ => {}
        }
        match quote {
            Some((q, tripled)) => {
                if escaped {
                    escaped = false;
                } else if c == '\\' {
                    escaped = true;
                } else if c == q && (!tripled || chars.get(index + 1..index + 3) == Some(&[q, q][..])) {
                    if tripled {
                        index += 2;
                    }
                    quote = None;
                }
            }
            None => match c {
                '\'' | '"' => {
                    let tripled = chars.get(index + 1..index + 3) == Some(&[c, c][..]);
                    if tripled {
                        index += 2;
                    }
                    quote = Some((c, tripled));
                }
                '(' | '[' | '{' => {
                    nesting += 1;
                    if nesting > MAX_EXPRESSION_NESTING {
                        return Err(format!(
                            "brackets nest more than {MAX_EXPRESSION_NESTING} deep (at character {}); expected at most {MAX_EXPRESSION_NESTING}",
                            index + 1
                        ));
                    }
                }
                ')' | ']' | '}' => nesting = nesting.saturating_sub(1),
                _ => {}
            },
        }
        index += 1;
    }
    // Counted from the characters, not the loop: a tripled quote moves the scan three at a time.
    if chars.len() > MAX_EXPRESSION_LENGTH {
        let total = text.chars().count();
        return Err(format!("it is {total} characters long; expected at most {MAX_EXPRESSION_LENGTH}"));
    }
    let stack = (deepest_raw * STACK_PER_LEVEL + operators * STACK_PER_OPERATOR) * DEBUG_FACTOR;
    Ok(Shape { stack })
}

/// The depth of the tree and the deepest nesting of comprehensions in it, without recursing. A
/// comprehension's list (`xs` in `xs.map(x, …)`) is at the comprehension's own level, its body one deeper:
/// `xs.map(…).filter(…)` is two in a row, not nested.
fn measure(root: &IdedExpr) -> (usize, usize) {
    let mut deepest = 0;
    let mut deepest_comprehension = 0;
    let mut stack: Vec<(&IdedExpr, usize, usize)> = vec![(root, 1, 0)];
    while let Some((node, depth, comprehensions)) = stack.pop() {
        deepest = deepest.max(depth);
        deepest_comprehension = deepest_comprehension.max(comprehensions);
        let below = depth + 1;
        match &node.expr {
            Expr::Call(call) => {
                stack.extend(call.target.iter().map(|target| (target.as_ref(), below, comprehensions)));
                stack.extend(call.args.iter().map(|arg| (arg, below, comprehensions)));
            }
            Expr::Comprehension(comprehension) => {
                let inside = comprehensions + 1;
                deepest_comprehension = deepest_comprehension.max(inside);
                stack.push((&comprehension.iter_range, below, comprehensions));
                for body in [
                    &comprehension.accu_init,
                    &comprehension.loop_cond,
                    &comprehension.loop_step,
                    &comprehension.result,
                ] {
                    stack.push((body, below, inside));
                }
            }
            Expr::List(list) => stack.extend(list.elements.iter().map(|element| (element, below, comprehensions))),
            Expr::Map(map) => push_entries(&mut stack, &map.entries, below, comprehensions),
            Expr::Struct(object) => push_entries(&mut stack, &object.entries, below, comprehensions),
            Expr::Select(select) => stack.push((&select.operand, below, comprehensions)),
            Expr::Ident(_) | Expr::Literal(_) | Expr::Unspecified => {}
        }
    }
    (deepest, deepest_comprehension)
}

fn push_entries<'a>(
    stack: &mut Vec<(&'a IdedExpr, usize, usize)>,
    entries: &'a [cel::common::ast::IdedEntryExpr],
    depth: usize,
    comprehensions: usize,
) {
    for entry in entries {
        match &entry.expr {
            EntryExpr::MapEntry(pair) => {
                stack.push((&pair.key, depth, comprehensions));
                stack.push((&pair.value, depth, comprehensions));
            }
            EntryExpr::StructField(field) => stack.push((&field.value, depth, comprehensions)),
        }
    }
}

/// The start of an expression for a one-line message: at most 40 characters, control characters escaped.
pub(crate) fn excerpt(text: &str) -> String {
    let mut shown = String::new();
    for c in text.chars().take(40) {
        if c.is_control() {
            shown.extend(c.escape_default());
        } else {
            shown.push(c);
        }
    }
    if text.chars().nth(40).is_some() {
        shown.push('…');
    }
    shown
}
