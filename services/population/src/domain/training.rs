//! Training the matching model on the registry's own records (`hie population train`): a data
//! steward's act, refused before the minutes of training to anyone else, and audited.

use hie_access::Subject;
use hie_core::Error;
use hie_core::context::RequestContext;
use hie_core::vocabulary::AuditAction;

use super::{PopulationService, SourceRecordId};

impl PopulationService {
    /// Trains a matching model on every source record in the registry and stores it as the next
    /// version, with its audit event (a data steward's or operator's act: role administrator);
    /// returns the version and the model. Running servers take it up with
    /// [`Self::reload_matcher`].
    pub async fn train_model(
        &self,
        context: &RequestContext,
        progress: &dyn super::linkage::run::Progress,
    ) -> Result<(i64, super::linkage::model::LinkageModel, usize), Error> {
        let subject = Subject::new(AuditAction::TrainModel, "match_model");
        if let Err(reason) = context.administrators_only("train the matching model") {
            // Refused before the minutes of training, and recorded as refused.
            return Err(self.access.audit().refuse(context, &subject, reason).await);
        }
        let (model, trained_on, candidate_pairs) = self.train_unsaved(progress).await?;
        let json = model.to_json();
        let version = self
            .access
            .audit()
            .write(context, subject, Ok(()), async |unit| {
                self.store.save_model(unit, &json, trained_on).await
            })
            .await?;
        Ok((version, model, candidate_pairs))
    }

    /// Trains a model on every source record without storing it.
    async fn train_unsaved(
        &self,
        progress: &dyn super::linkage::run::Progress,
    ) -> Result<(super::linkage::model::LinkageModel, u64, usize), Error> {
        let mut fields = Vec::new();
        let mut after: Option<SourceRecordId> = None;
        loop {
            let batch = self.store.source_records_after(after.as_ref(), 10_000).await?;
            let Some(last) = batch.last() else { break };
            after = Some(last.id.clone());
            fields.extend(
                batch
                    .iter()
                    .map(|r| super::person_fields(&r.demographics, &r.identifiers)),
            );
        }
        if fields.len() < 2 {
            return Err(Error::precondition(
                "source_records",
                format!(
                    "the registry holds {} records; training needs at least 2",
                    fields.len()
                ),
            ));
        }
        let (profiles, _) = super::linkage::prepare_all(&fields);
        let options = super::linkage::run::RunOptions {
            rules: self.matcher().blocking_rules(),
            model: None,
            // Nothing is linked here: the run is for its model.
            threshold: f64::INFINITY,
            left_len: None,
        };
        let run = super::linkage::run::run(&profiles, &options, progress);
        Ok((run.model, profiles.len() as u64, run.candidate_pairs))
    }
}
