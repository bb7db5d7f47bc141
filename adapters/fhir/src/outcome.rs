//! OperationOutcome: how a FHIR server says what was wrong, element by element.

use serde_json::{Value, json};

/// One problem, at a FHIRPath expression (`Patient.birthDate`,
/// `Bundle.entry[2].resource.subject`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Issue {
    /// The issue-type code (`invalid`, `required`, `value`, `not-supported`, `structure`,
    /// `transient`, `exception`).
    pub code: &'static str,
    pub expression: String,
    pub diagnostics: String,
}

impl Issue {
    pub fn new(code: &'static str, expression: impl Into<String>, diagnostics: impl Into<String>) -> Issue {
        Issue {
            code,
            expression: expression.into(),
            diagnostics: diagnostics.into(),
        }
    }

    pub fn required(expression: impl Into<String>, diagnostics: impl Into<String>) -> Issue {
        Issue::new("required", expression, diagnostics)
    }

    pub fn value(expression: impl Into<String>, diagnostics: impl Into<String>) -> Issue {
        Issue::new("value", expression, diagnostics)
    }

    /// The same issue inside a bundle entry.
    pub fn within(mut self, prefix: &str) -> Issue {
        let rest = self.expression.split_once('.').map_or("", |(_, rest)| rest);
        self.expression = if rest.is_empty() {
            prefix.to_owned()
        } else {
            format!("{prefix}.{rest}")
        };
        self
    }
}

impl std::fmt::Display for Issue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.expression, self.diagnostics)
    }
}

/// An OperationOutcome of errors.
pub fn errors(issues: &[Issue]) -> Value {
    json!({
        "resourceType": "OperationOutcome",
        "issue": issues.iter().map(|issue| json!({
            "severity": "error",
            "code": issue.code,
            "diagnostics": issue.diagnostics,
            "expression": [issue.expression],
        })).collect::<Vec<_>>(),
    })
}

/// An OperationOutcome of one piece of information.
pub fn information(text: &str) -> Value {
    json!({
        "resourceType": "OperationOutcome",
        "issue": [{"severity": "information", "code": "informational", "diagnostics": text}],
    })
}
