//! Training the matching model on the registry's own records (`hie population train`): a data
//! steward's act, refused before the minutes of training to anyone else, and audited.

use hie_access::Subject;
use hie_core::Error;
use hie_core::context::RequestContext;
use hie_core::vocabulary::AuditAction;

use super::linkage::Profile;
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
    ) -> Result<(i64, TrainedModel), Error> {
        let subject = Subject::new(AuditAction::TrainModel, "match_model");
        if let Err(reason) = context.administrators_only("train the matching model") {
            // Refused before the minutes of training, and recorded as refused.
            return Err(self.access.audit().refuse(context, &subject, reason).await);
        }
        let mut trained = self.train_unsaved(progress).await?;
        let json = trained.model.to_json();
        let trained_on = trained.model.trained_on_records;
        let version = self
            .access
            .audit()
            .write(context, subject, Ok(()), async |unit| {
                self.store.save_model(unit, &json, trained_on).await
            })
            .await?;
        trained.records_rekeyed = self
            .add_keys_of_new_rules(context, &trained.model, progress)
            .await?;
        Ok((version, trained))
    }

    /// Gives every record its keys under the new model's blocking rules as well as the rules in
    /// force, when they differ (and the settings do not fix the rules): a server that has taken
    /// up the new model finds the records registered before it, and one that has not yet still
    /// finds them by the old keys. The old rules' keys go when `hie population rematch` renews
    /// each record's keys. Returns how many records were given keys.
    async fn add_keys_of_new_rules(
        &self,
        context: &RequestContext,
        model: &super::linkage::model::LinkageModel,
        progress: &dyn super::linkage::run::Progress,
    ) -> Result<usize, Error> {
        let current = self.matcher();
        let new_rules = super::linkage::blocking::parse_rules(&model.blocking_rules)
            .map_err(|e| Error::precondition("blocking_rules", e))?;
        let old_rules = current.blocking_rules();
        if current.rules_are_configured() || new_rules.iter().all(|r| old_rules.contains(r)) {
            return Ok(0);
        }
        let mut rules = old_rules;
        for rule in new_rules {
            if !rules.contains(&rule) {
                rules.push(rule);
            }
        }
        let total = self.store.count_source_records().await? as usize;
        let mut done = 0;
        let mut after: Option<SourceRecordId> = None;
        loop {
            let batch = self.store.source_records_after(after.as_ref(), 1_000).await?;
            let Some(last) = batch.last() else { break };
            after = Some(last.id.clone());
            let keys: Vec<_> = batch
                .iter()
                .map(|r| {
                    let (profile, _) =
                        Profile::prepare(&super::person_fields(&r.demographics, &r.identifiers));
                    super::matching::keys_under(&rules, &profile)
                })
                .collect();
            let subject =
                Subject::new(AuditAction::RenewMatchKeys, "source_record").resource(last.id.as_str());
            self.access
                .audit()
                .write(context, subject, Ok(()), async |unit| {
                    for (record, keys) in batch.iter().zip(&keys) {
                        self.store.set_match_keys(unit, &record.id, keys, true).await?;
                    }
                    Ok(())
                })
                .await?;
            done += batch.len();
            progress.report(
                super::linkage::run::Stage::Blocking,
                done.min(total),
                total.max(done),
            );
        }
        Ok(done)
    }

    /// Trains a model on every source record without storing it.
    async fn train_unsaved(
        &self,
        progress: &dyn super::linkage::run::Progress,
    ) -> Result<TrainedModel, Error> {
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
        // Every identifier system the records carry (beyond the resident identity number) is
        // compared as a field of its own, the most common first.
        let mut systems: Vec<(usize, String)> = Vec::new();
        for record in &fields {
            for (name, _) in record.identifiers() {
                match systems.iter_mut().find(|(_, n)| n == name) {
                    Some((count, _)) => *count += 1,
                    None => systems.push((1, name.to_owned())),
                }
            }
        }
        systems.sort_by(|a, b| b.0.cmp(&a.0).then_with(|| a.1.cmp(&b.1)));
        let names: Vec<&str> = systems
            .iter()
            .take(super::linkage::comparison::MAX_IDENTIFIERS)
            .map(|(_, n)| n.as_str())
            .collect();
        let schema = super::linkage::comparison::Schema::new(&names)
            .map_err(|e| Error::precondition("identifiers", e))?;
        let (profiles, _) = super::linkage::prepare_all(&fields);
        let options = super::linkage::run::RunOptions {
            schema,
            // Chosen from the registry's own records, within the default budget.
            rules: Vec::new(),
            max_pairs: 0,
            model: None,
            // Nothing is linked here: the run is for its model.
            threshold: f64::INFINITY,
            left_len: None,
        };
        let run = super::linkage::run::run(&profiles, &options, progress)
            .map_err(|reason| Error::precondition("source_records", reason))?;
        Ok(TrainedModel {
            model: run.model,
            candidate_pairs: run.candidate_pairs,
            choice: run.choice,
            records_rekeyed: 0,
        })
    }
}

/// A model trained on the registry, with how its blocking rules were chosen.
#[derive(Debug)]
pub struct TrainedModel {
    pub model: super::linkage::model::LinkageModel,
    pub candidate_pairs: usize,
    pub choice: Option<super::linkage::choice::BlockingChoice>,
    /// The records given keys under the new rules (0 when the rules did not change).
    pub records_rekeyed: usize,
}
