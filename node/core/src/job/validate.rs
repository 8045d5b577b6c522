//! The rules of a job spec, each naming its key and what to write.

use std::collections::BTreeSet;

use super::{
    COMMAND_ARGS_MAX, DURATION_S_MAX, ENV_VARS_MAX, EXECUTORS, Invalid, JobSpec, WORKERS_MAX,
};

impl JobSpec {
    /// Checks every rule; returns all problems, each naming its key and what to write.
    pub fn validate(&self) -> Result<(), Vec<Invalid>> {
        let mut out = Vec::new();
        self.validate_image_and_command(&mut out);
        self.validate_env(&mut out);
        self.validate_resources(&mut out);
        self.ports.validate(&mut out);
        if !(1..=DURATION_S_MAX).contains(&self.duration_s) {
            out.push(Invalid::new(
                &["duration_s"],
                format!(
                    "{} is out of range; write 1 to {DURATION_S_MAX} (7 days), \
                     e.g. duration_s = 3600",
                    self.duration_s
                ),
            ));
        }
        if !(1..=WORKERS_MAX).contains(&self.workers) {
            out.push(Invalid::new(
                &["workers"],
                format!("{} is out of range; write 1 to {WORKERS_MAX}", self.workers),
            ));
        }
        self.validate_constraints(&mut out);
        if out.is_empty() { Ok(()) } else { Err(out) }
    }

    fn validate_image_and_command(&self, out: &mut Vec<Invalid>) {
        if self.image.trim().is_empty() {
            out.push(Invalid::new(
                &["image"],
                "must not be empty; write e.g. image = \"busybox:1.36\"",
            ));
        } else if self.image.chars().any(char::is_whitespace) {
            out.push(Invalid::new(
                &["image"],
                format!(
                    "`{}` contains whitespace; write one image name, e.g. image = \"busybox:1.36\"",
                    self.image
                ),
            ));
        }
        if self.command.len() > COMMAND_ARGS_MAX {
            out.push(Invalid::new(
                &["command"],
                format!(
                    "{} arguments; write at most {COMMAND_ARGS_MAX}",
                    self.command.len()
                ),
            ));
        }
        if self.command.first().is_some_and(|c| c.is_empty()) {
            out.push(Invalid::new(
                &["command"],
                "the program (first element) is empty; write e.g. command = [\"sh\", \"-c\", \"echo hi\"]",
            ));
        }
    }

    fn validate_env(&self, out: &mut Vec<Invalid>) {
        if self.env.len() > ENV_VARS_MAX {
            out.push(Invalid::new(
                &["env"],
                format!("{} variables; set at most {ENV_VARS_MAX}", self.env.len()),
            ));
        }
        for (name, value) in &self.env {
            let mut chars = name.chars();
            let ok = chars
                .next()
                .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
                && chars.all(|c| c.is_ascii_alphanumeric() || c == '_');
            if !ok {
                out.push(Invalid::new(
                    &["env", name],
                    format!(
                        "`{name}` is not a variable name; use letters, digits and _, \
                         not starting with a digit, e.g. MY_VAR"
                    ),
                ));
            }
            if value.contains('\0') {
                out.push(Invalid::new(
                    &["env", name],
                    "the value contains a NUL character; remove it",
                ));
            }
        }
    }

    fn validate_resources(&self, out: &mut Vec<Invalid>) {
        if self.resources.millicores == 0 {
            out.push(Invalid::new(
                &["resources", "cores"],
                "must be more than 0; write e.g. cores = 1 or cores = 0.5",
            ));
        }
        if self.resources.memory_mb == 0 {
            out.push(Invalid::new(
                &["resources", "memory_mb"],
                "must be more than 0; write e.g. memory_mb = 512",
            ));
        }
    }

    fn validate_constraints(&self, out: &mut Vec<Invalid>) {
        let c = &self.constraints;
        let mut seen = BTreeSet::new();
        for r in &c.region {
            if r.trim().is_empty() {
                out.push(Invalid::new(
                    &["constraints", "region"],
                    "a region is empty; write names, e.g. region = [\"eu-west\"]",
                ));
            } else if !seen.insert(r.as_str()) {
                out.push(Invalid::new(
                    &["constraints", "region"],
                    format!("`{r}` is listed twice; list each region once"),
                ));
            }
        }
        if c.rtt_max_ms == Some(0) {
            out.push(Invalid::new(
                &["constraints", "rtt_max_ms"],
                "must be more than 0; write e.g. rtt_max_ms = 50, or remove it for no limit",
            ));
        }
        if let Some(e) = &c.executor
            && !EXECUTORS.contains(&e.as_str())
        {
            out.push(Invalid::new(
                &["constraints", "executor"],
                format!(
                    "`{e}` is not an executor; write one of {}, or remove it for any",
                    EXECUTORS.map(|x| format!("\"{x}\"")).join(", ")
                ),
            ));
        }
    }
}
