//! Rego policies through regorus, embedded: compiling an organization's
//! policy (a compile error names its line and column) and deciding with it.
//!
//! A policy is one module of package `idp.authz`; its rule `allow` decides:
//! `true` allows, anything else (false, undefined, another value) denies.
//! Time is given in the input from the server's clock, never read by the
//! policy, so that decisions are reproducible.

use std::sync::Arc;

/// A policy's input, or part of one: shared by reference count, so a part
/// built once (what is known of a subject) goes into many inputs for the
/// price of a pointer.
pub use regorus::Value;
use regorus::{CompiledPolicy, Engine};

/// The package every policy declares.
pub const PACKAGE: &str = "idp.authz";
/// The rule that decides.
pub const ENTRYPOINT: &str = "data.idp.authz.allow";
/// The file name compile errors name.
const FILE: &str = "policy.rego";

/// Why a policy does not compile.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct CompileError {
    pub line: Option<u32>,
    pub column: Option<u32>,
    pub message: String,
}

impl CompileError {
    fn from_regorus(e: &dyn std::fmt::Display) -> Self {
        let text = e.to_string();
        let position = text
            .split_once(&format!("--> {FILE}:"))
            .and_then(|(_, rest)| {
                let mut parts = rest.split(|c: char| c == ':' || c.is_whitespace());
                let line = parts.next()?.parse().ok()?;
                let column = parts.next()?.parse().ok()?;
                Some((line, column))
            });
        let message = text
            .lines()
            .rev()
            .find(|l| !l.trim().is_empty())
            .unwrap_or("the policy does not compile")
            .trim()
            .to_owned();
        Self {
            line: position.map(|(l, _)| l),
            column: position.map(|(_, c)| c),
            message,
        }
    }

    fn plain(message: impl Into<String>) -> Self {
        Self {
            line: None,
            column: None,
            message: message.into(),
        }
    }
}

/// A compiled policy, shared by every request that decides with it.
#[derive(Clone)]
pub struct Policy {
    compiled: Arc<CompiledPolicy>,
}

impl std::fmt::Debug for Policy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Policy")
    }
}

/// Compiles `source`: it must parse, declare package `idp.authz`, and
/// compile with `allow` as its entry point.
pub fn compile(source: &str) -> Result<Policy, CompileError> {
    let mut engine = Engine::new();
    engine
        .add_policy(FILE.to_owned(), source.to_owned())
        .map_err(|e| CompileError::from_regorus(&e))?;
    let packages = engine
        .get_packages()
        .map_err(|e| CompileError::from_regorus(&e))?;
    if !packages.iter().any(|p| p == &format!("data.{PACKAGE}")) {
        return Err(CompileError::plain(format!(
            "the policy must declare `package {PACKAGE}` (it declares {})",
            packages.join(", ")
        )));
    }
    let compiled = engine
        .compile_with_entrypoint(&ENTRYPOINT.into())
        .map_err(|e| CompileError::from_regorus(&e))?;
    Ok(Policy {
        compiled: Arc::new(compiled),
    })
}

/// Why a decision could not be made (the caller denies).
#[derive(Debug, thiserror::Error)]
#[error("evaluation failed: {0}")]
pub struct EvalError(String);

impl Policy {
    /// Whether the policy allows, given `input`.
    pub fn allows(&self, input: serde_json::Value) -> Result<bool, EvalError> {
        self.allows_value(Value::from(input))
    }

    /// [`Policy::allows`] with an input already in the policy's own form.
    pub fn allows_value(&self, input: Value) -> Result<bool, EvalError> {
        let value = self
            .compiled
            .eval_with_input(input)
            .map_err(|e| EvalError(e.to_string()))?;
        Ok(matches!(value, Value::Bool(true)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const POLICY: &str = r#"package idp.authz
import rego.v1

default allow := false

allow if "admin" in input.subject.roles

allow if {
    input.action.name == "read"
    input.subject.attributes.department == input.resource.properties.department
    input.context.time.hour >= 8
    input.context.time.hour < 18
}
"#;

    #[test]
    fn a_policy_decides_on_roles_attributes_and_time() {
        let p = compile(POLICY).unwrap();
        let input = |roles: &[&str], dept: &str, hour: u8| {
            json!({
                "subject": {"roles": roles, "attributes": {"department": dept}},
                "resource": {"properties": {"department": "sales"}},
                "action": {"name": "read"},
                "context": {"time": {"hour": hour}},
            })
        };
        assert!(p.allows(input(&["admin"], "hr", 3)).unwrap());
        assert!(p.allows(input(&[], "sales", 9)).unwrap());
        assert!(!p.allows(input(&[], "sales", 20)).unwrap());
        assert!(!p.allows(input(&[], "hr", 9)).unwrap());
    }

    #[test]
    fn a_compile_error_names_its_line_and_column() {
        let e = compile("package idp.authz\n\nallow if {\n  input.x ==\n}\n").unwrap_err();
        assert_eq!(e.line, Some(5), "{e:?}");
        assert!(e.column.is_some(), "{e:?}");
        assert!(!e.message.is_empty());
        let e = compile("package other\nallow := true\n").unwrap_err();
        assert!(e.message.contains("package idp.authz"), "{e:?}");
    }

    #[test]
    fn anything_but_true_denies() {
        let p = compile("package idp.authz\nallow := \"yes\"\n").unwrap();
        assert!(!p.allows(json!({})).unwrap());
        let p = compile("package idp.authz\nimport rego.v1\nallow if input.never\n").unwrap();
        assert!(!p.allows(json!({})).unwrap());
    }
}
