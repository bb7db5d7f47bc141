//! The words services write down for others to read: the actions of the audit trail and the
//! types of outbox events. Each is a variant here, never a string at a call site, so that a
//! privacy officer's query or an event subscriber's filter can rely on the list being complete.

/// Declares an enum whose variants each have one stored code, with `code()` and `parse()`.
macro_rules! vocabulary {
    ($(#[$doc:meta])* $name:ident { $($(#[$vdoc:meta])* $variant:ident => $code:literal,)* }) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub enum $name {
            $($(#[$vdoc])* $variant,)*
        }

        impl $name {
            /// Every variant, in declaration order.
            pub const ALL: &'static [$name] = &[$($name::$variant,)*];

            /// The code stored and shown.
            pub const fn code(self) -> &'static str {
                match self {
                    $($name::$variant => $code,)*
                }
            }

            /// The variant of a stored code.
            pub fn parse(code: &str) -> Option<$name> {
                match code {
                    $($code => Some($name::$variant),)*
                    _ => None,
                }
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.code())
            }
        }
    };
}

vocabulary!(
    /// What a caller did, as the audit trail records it.
    AuditAction {
        /// A call whose claims (role, purpose, patient) its organisation may not make.
        ContextClaim => "context.claim",
        SetConsent => "access.set_consent",
        GetConsent => "access.get_consent",
        PatientAccessLog => "access.patient_access_log",
        QueryAudit => "access.query_audit",
        RegisterOrganisation => "directory.register_organisation",
        UpdateOrganisation => "directory.update_organisation",
        RegisterPractitioner => "directory.register_practitioner",
        UpdatePractitioner => "directory.update_practitioner",
        IssueCertificate => "directory.certificate.issue",
        RevokeCertificate => "directory.certificate.revoke",
        RegisterSourceRecord => "population.register",
        ResolveIdentifier => "population.resolve",
        GetPerson => "population.get_person",
        SearchPersons => "population.search",
        ListMatchReviews => "population.list_reviews",
        LinkByReview => "population.review.link",
        RejectReview => "population.review.reject",
        LinkSourceRecord => "population.link",
        UnlinkSourceRecord => "population.unlink",
        MergePersons => "population.merge",
        MergeLocalPatients => "population.local_patients.merge",
        UnmergePersons => "population.unmerge",
        Rematch => "population.rematch",
        RematchDryRun => "population.rematch.dry_run",
        TrainModel => "population.model.train",
        /// Records given their keys under a newly trained model's blocking rules.
        RenewMatchKeys => "population.match_keys.renew",
        SubmitHealthRecord => "records.submit",
        QueryHealthRecords => "records.query",
        GetHealthRecord => "records.get",
        RegisterEncounter => "emr.encounter.register",
        ListEncounters => "emr.encounter.list",
        RegisterDocumentSet => "emr.document_set.register",
        FindDocuments => "emr.documents.find",
        RetrieveDocument => "emr.document.retrieve",
        GetPatientSummary => "emr.summary",
        LinkCard => "cards.link",
        UnlinkCard => "cards.unlink",
        ReportCardLost => "cards.report_lost",
        RevokeCard => "cards.revoke",
        ExpireCard => "cards.expire",
        ReplaceCard => "cards.replace",
        ListCards => "cards.list",
        GetCardHistory => "cards.history",
        ResolveCard => "cards.resolve",
        CheckIn => "cards.check_in",
        /// A lost, revoked, replaced or expired card presented at a reader: refused, and recorded
        /// for the privacy officer (who may be looking for a stolen card).
        LostCardUsed => "cards.lost_card_used",
        CreateSubscription => "events.subscription.create",
        GetSubscription => "events.subscription.get",
        CancelSubscription => "events.subscription.cancel",
        AcknowledgeEvents => "events.acknowledge",
        /// One event delivered to one subscription: the read of the person's data it is.
        DeliverEvent => "events.deliver",
        PutServiceItem => "telemedicine.service_item.put",
        RequestConsult => "telemedicine.consult.request",
        AcceptConsult => "telemedicine.consult.accept",
        DeclineConsult => "telemedicine.consult.decline",
        CompleteConsult => "telemedicine.consult.complete",
        CancelConsult => "telemedicine.consult.cancel",
        GetConsult => "telemedicine.consult.get",
        GetConsultRecords => "telemedicine.consult.records",
    }
);

vocabulary!(
    /// What happened, as an outbox event announces it to subscribers.
    EventType {
        /// A source record joined a person (registration, re-matching or a steward's link).
        RecordLinked => "population.record.linked",
        PersonMerged => "population.person.merged",
        PersonUnmerged => "population.person.unmerged",
        /// A read that only break-the-glass permitted, for the privacy officer.
        EmergencyOverride => "access.emergency_override",
        /// A person's consent directives were set (by the patient or staff, or by a merge, an
        /// unmerge or an unlink that carries them along).
        ConsentChanged => "access.consent.changed",
        /// An entry of the resident health archive was submitted, or a new version of it.
        HealthRecordSubmitted => "records.entry.submitted",
        /// A visit was registered or changed (admission, transfer, discharge).
        EncounterRegistered => "emr.encounter.registered",
        DocumentRegistered => "emr.document.registered",
        /// A document replaced another (RPLC), which is now deprecated.
        DocumentReplaced => "emr.document.replaced",
        CardLinked => "cards.card.linked",
        CardUnlinked => "cards.card.unlinked",
        CardLost => "cards.card.lost",
        CardRevoked => "cards.card.revoked",
        CardExpired => "cards.card.expired",
        /// A card was replaced by a new one, which inherits its holder.
        CardReplaced => "cards.card.replaced",
        ConsultRequested => "telemedicine.consult.requested",
        /// The hospital accepted; the consultant's grant is in the payload's `access_expires_at`.
        ConsultAccepted => "telemedicine.consult.accepted",
        ConsultDeclined => "telemedicine.consult.declined",
        /// The consult's report was registered (its `report_unique_id`).
        ConsultCompleted => "telemedicine.consult.completed",
        ConsultCancelled => "telemedicine.consult.cancelled",
    }
);

impl EventType {
    /// Whether every replica must hear of the event as soon as it commits, because it changes
    /// what a replica holds in memory: a card's status or holder, a person's consent or lineage.
    /// On PostgreSQL the writing transaction notifies `db::CHANGES_CHANNEL`.
    pub fn concerns_replicas(self) -> bool {
        matches!(
            self,
            EventType::CardLinked
                | EventType::CardUnlinked
                | EventType::CardLost
                | EventType::CardRevoked
                | EventType::CardExpired
                | EventType::CardReplaced
                | EventType::ConsentChanged
                | EventType::PersonMerged
                | EventType::PersonUnmerged
        )
    }

    /// The version of the payload's schema: raised when a payload changes in a way a
    /// subscriber must know, so that one reading an older event knows its shape.
    pub fn schema_version(self) -> i64 {
        match self {
            EventType::RecordLinked
            | EventType::PersonMerged
            | EventType::PersonUnmerged
            | EventType::EmergencyOverride
            | EventType::ConsentChanged
            | EventType::HealthRecordSubmitted
            | EventType::EncounterRegistered
            | EventType::DocumentRegistered
            | EventType::DocumentReplaced
            | EventType::CardLinked
            | EventType::CardUnlinked
            | EventType::CardLost
            | EventType::CardRevoked
            | EventType::CardExpired
            | EventType::CardReplaced
            | EventType::ConsultRequested
            | EventType::ConsultAccepted
            | EventType::ConsultDeclined
            | EventType::ConsultCompleted
            | EventType::ConsultCancelled => 1,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_code_is_distinct_and_parses_back() {
        let mut codes: Vec<&str> = AuditAction::ALL.iter().map(|a| a.code()).collect();
        codes.sort_unstable();
        codes.dedup();
        assert_eq!(codes.len(), AuditAction::ALL.len());
        for action in AuditAction::ALL {
            assert_eq!(AuditAction::parse(action.code()), Some(*action));
        }
        for event in EventType::ALL {
            assert_eq!(EventType::parse(event.code()), Some(*event));
        }
        assert_eq!(EventType::parse("population.nothing"), None);
    }
}
