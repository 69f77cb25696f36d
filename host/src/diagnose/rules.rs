//! The subject plugin's built-in expert rules (its `diagnose` export), as a diagnoser: the
//! answer when no LLM is configured, and the fallback when the configured one fails.

use std::future::Future;

use super::model::Diagnosis;
use super::validate::{self, Validated};
use super::{DiagnosisRequest, PluginSubject};
use crate::runtime::bindings::types;

/// Something that diagnoses a ticket by rules. [`PluginSubject`] asks the plugin; tests and
/// other callers may supply their own.
pub trait RuleDiagnoser: Sync {
    /// The rules' diagnosis of `ticket` in `observation`, or why there is none.
    fn rules(
        &self,
        ticket: &types::Ticket,
        observation: &types::Observation,
    ) -> impl Future<Output = Result<types::Diagnosis, String>> + Send;
}

impl RuleDiagnoser for PluginSubject<'_> {
    async fn rules(
        &self,
        ticket: &types::Ticket,
        observation: &types::Observation,
    ) -> Result<types::Diagnosis, String> {
        match self.plugin().diagnose(self.context(), ticket, observation).await {
            Ok(Ok(diagnosis)) => Ok(diagnosis),
            Ok(Err(message)) => {
                Err(format!("plugin `{}` could not diagnose: {message}", self.plugin().plugin().name()))
            }
            Err(error) => Err(error.to_string()),
        }
    }
}

/// The rules' diagnosis of a request, validated against its catalogue.
pub(crate) async fn diagnose<R: RuleDiagnoser>(rules: &R, request: &DiagnosisRequest) -> Result<Validated, String> {
    let diagnosis = rules.rules(&request.ticket, &request.observation).await?;
    validate::diagnosis_against(Diagnosis::from_wit(&diagnosis), &request.actions)
        .map_err(|problems| format!("the rules' diagnosis is invalid: {}", problems.join("; ")))
}
