//! Tests of [`ControllerState::apply`]: each validation rule on its own, then a proptest over
//! random command sequences checking the safety invariants the failover design rests on.

use std::collections::{BTreeMap, BTreeSet};

use proptest::prelude::*;

use super::elect::Candidate;
use super::state::{Applied, Command, ControllerState};
use crate::ResponseCode;

const SET: &str = "broker-a";

fn register(id: i64) -> Command {
    Command::RegisterBroker {
        cluster_name: "c".to_owned(),
        broker_name: SET.to_owned(),
        broker_id: id,
        broker_address: format!("10.0.0.{id}:10911"),
    }
}

fn cand(broker_id: i64, epoch: i32, max_offset: i64) -> Candidate {
    Candidate {
        broker_id,
        epoch,
        max_offset,
        election_priority: 0,
    }
}

fn elect(broker_id: Option<i64>, alive: Vec<Candidate>, allow_unclean: bool) -> Command {
    Command::ElectMaster {
        broker_name: SET.to_owned(),
        broker_id,
        designate: false,
        alive,
        allow_unclean,
    }
}

fn alter(master: i64, master_epoch: i32, set: &[i64], set_epoch: i32, alive: &[i64]) -> Command {
    Command::AlterSyncStateSet {
        broker_name: SET.to_owned(),
        master_broker_id: master,
        master_epoch,
        sync_state_set: set.iter().copied().collect(),
        sync_state_set_epoch: set_epoch,
        alive: alive.iter().copied().collect(),
    }
}

fn code(applied: &Applied) -> ResponseCode {
    ResponseCode::from_value(applied.code)
}

/// Three registered brokers, 1 master at epoch 1 with ISR {1, 2} at sync-state-set epoch 2.
fn three_with_master_one() -> ControllerState {
    let mut state = ControllerState::default();
    for id in 1..=3 {
        assert_eq!(code(&state.apply(&register(id))), ResponseCode::Success);
    }
    let first = state.apply(&elect(Some(1), vec![cand(1, 0, 0)], false));
    assert_eq!(code(&first), ResponseCode::Success);
    let grown = state.apply(&alter(1, 1, &[1, 2], 1, &[1, 2, 3]));
    assert_eq!(code(&grown), ResponseCode::Success);
    state
}

fn set_of(state: &ControllerState) -> &super::state::BrokerSet {
    state
        .broker_sets
        .get(SET)
        .expect("the tests register broker-a first")
}

#[test]
fn the_first_election_makes_the_requester_master_at_epoch_one() {
    let state = three_with_master_one();
    let set = set_of(&state);
    assert_eq!(set.master, Some(1));
    assert_eq!(set.master_epoch, 1);
    assert_eq!(set.sync_state_set, BTreeSet::from([1, 2]));
    assert_eq!(set.sync_state_set_epoch, 2);
}

#[test]
fn stale_epochs_are_fenced() {
    let mut state = three_with_master_one();
    let before = state.clone();
    let stale_master = state.apply(&alter(1, 0, &[1], 2, &[1, 2, 3]));
    assert_eq!(
        code(&stale_master),
        ResponseCode::ControllerFencedMasterEpoch
    );
    let stale_set = state.apply(&alter(1, 1, &[1], 1, &[1, 2, 3]));
    assert_eq!(
        code(&stale_set),
        ResponseCode::ControllerFencedSyncStateSetEpoch
    );
    assert_eq!(state, before);
}

#[test]
fn only_the_master_alters_and_it_must_stay_in_the_set() {
    let mut state = three_with_master_one();
    let before = state.clone();
    let not_master = state.apply(&alter(2, 1, &[2], 2, &[1, 2, 3]));
    assert_eq!(code(&not_master), ResponseCode::ControllerInvalidMaster);
    let without_master = state.apply(&alter(1, 1, &[2, 3], 2, &[1, 2, 3]));
    assert_eq!(
        code(&without_master),
        ResponseCode::ControllerAlterSyncStateSetFailed
    );
    let unchanged = state.apply(&alter(1, 1, &[1, 2], 2, &[1, 2, 3]));
    assert_eq!(
        code(&unchanged),
        ResponseCode::ControllerAlterSyncStateSetFailed
    );
    assert_eq!(state, before);
}

#[test]
fn only_registered_and_alive_brokers_join_the_set() {
    let mut state = three_with_master_one();
    let before = state.clone();
    let stranger = state.apply(&alter(1, 1, &[1, 9], 2, &[1, 9]));
    assert_eq!(code(&stranger), ResponseCode::ControllerInvalidReplicas);
    let dead = state.apply(&alter(1, 1, &[1, 3], 2, &[1, 2]));
    assert_eq!(code(&dead), ResponseCode::ControllerBrokerNotAlive);
    assert_eq!(state, before);
    let ok = state.apply(&alter(1, 1, &[1, 3], 2, &[1, 3]));
    assert_eq!(code(&ok), ResponseCode::Success);
    assert_eq!(ok.replica.map(|r| r.sync_state_set_epoch), Some(3));
}

#[test]
fn unknown_sets_are_refused_and_negative_ids_never_register() {
    let mut state = ControllerState::default();
    let unknown = state.apply(&elect(Some(1), vec![cand(1, 0, 0)], false));
    assert_eq!(
        code(&unknown),
        ResponseCode::ControllerBrokerNeedToBeRegistered
    );
    assert_eq!(unknown.replica, None);
    let negative = state.apply(&register(-1));
    assert_eq!(code(&negative), ResponseCode::ControllerBrokerIdInvalid);
    assert_eq!(state, ControllerState::default());
}

#[test]
fn election_takes_only_alive_in_sync_brokers_and_resets_the_set() {
    let mut state = three_with_master_one();
    // Master 1 is gone; 3 has the longest log but is not in sync, so 2 wins.
    let applied = state.apply(&elect(None, vec![cand(2, 1, 50), cand(3, 1, 90)], false));
    assert_eq!(code(&applied), ResponseCode::Success);
    assert!(applied.master_changed);
    let set = set_of(&state);
    assert_eq!(set.master, Some(2));
    assert_eq!(set.master_epoch, 2);
    assert_eq!(set.sync_state_set, BTreeSet::from([2]));
    assert_eq!(set.sync_state_set_epoch, 3);
    let info = applied.replica.expect("broker-a exists");
    assert_eq!(info.master_address.as_deref(), Some("10.0.0.2:10911"));
}

#[test]
fn with_no_eligible_broker_the_controller_clears_the_master_and_keeps_the_epoch() {
    let mut state = three_with_master_one();
    let requested = state.apply(&elect(Some(3), vec![cand(3, 1, 90)], false));
    assert_eq!(code(&requested), ResponseCode::ControllerElectMasterFailed);
    assert_eq!(set_of(&state).master, Some(1));
    let scanned = state.apply(&elect(None, vec![cand(3, 1, 90)], false));
    assert_eq!(code(&scanned), ResponseCode::ControllerMasterNotAvailable);
    assert!(scanned.master_changed);
    let set = set_of(&state);
    assert_eq!((set.master, set.master_epoch), (None, 1));
    // When 2 (in sync) comes back, it becomes master at a fresh epoch.
    let back = state.apply(&elect(Some(2), vec![cand(2, 1, 50), cand(3, 1, 90)], false));
    assert_eq!(code(&back), ResponseCode::Success);
    assert_eq!(
        (set_of(&state).master, set_of(&state).master_epoch),
        (Some(2), 2)
    );
}

#[test]
fn unclean_election_happens_only_when_allowed() {
    let mut state = three_with_master_one();
    let clean = state.apply(&elect(None, vec![cand(3, 1, 90)], false));
    assert_eq!(code(&clean), ResponseCode::ControllerMasterNotAvailable);
    let unclean = state.apply(&elect(None, vec![cand(3, 1, 90)], true));
    assert_eq!(code(&unclean), ResponseCode::Success);
    assert_eq!(set_of(&state).master, Some(3));
}

#[test]
fn an_alive_master_stays_and_unregistered_candidates_are_ignored() {
    let mut state = three_with_master_one();
    let before = state.clone();
    let still = state.apply(&elect(Some(2), vec![cand(1, 1, 10), cand(2, 1, 10)], false));
    assert_eq!(code(&still), ResponseCode::ControllerMasterStillExist);
    assert_eq!(state, before);
    let ghost = state.apply(&elect(None, vec![cand(7, 5, 1_000)], true));
    assert_eq!(code(&ghost), ResponseCode::ControllerMasterNotAvailable);
    assert_eq!(set_of(&state).master, None);
}

/// One random step: ids 0..4 (4 is never registered in some runs), small epochs so fencing and
/// matching both happen.
fn command_strategy() -> impl Strategy<Value = Command> {
    let id = 0i64..5;
    let ids = proptest::collection::btree_set(0i64..5, 0..4);
    let candidates = proptest::collection::vec((0i64..5, 0i32..4, 0i64..200), 0..4);
    let set_name = prop_oneof![Just("broker-a".to_owned()), Just("broker-b".to_owned())];
    prop_oneof![
        (set_name.clone(), 0i64..4).prop_map(|(broker_name, broker_id)| {
            Command::RegisterBroker {
                cluster_name: "c".to_owned(),
                broker_name,
                broker_id,
                broker_address: format!("10.0.0.{broker_id}:10911"),
            }
        }),
        (
            set_name.clone(),
            id.clone(),
            0i32..4,
            ids.clone(),
            0i32..6,
            ids
        )
            .prop_map(
                |(broker_name, master, master_epoch, set, set_epoch, alive)| {
                    Command::AlterSyncStateSet {
                        broker_name,
                        master_broker_id: master,
                        master_epoch,
                        sync_state_set: set,
                        sync_state_set_epoch: set_epoch,
                        alive,
                    }
                }
            ),
        (
            set_name,
            proptest::option::of(id),
            any::<bool>(),
            candidates,
            any::<bool>()
        )
            .prop_map(
                |(broker_name, broker_id, designate, alive, allow_unclean)| {
                    Command::ElectMaster {
                        broker_name,
                        broker_id,
                        designate,
                        alive: alive
                            .into_iter()
                            .map(|(id, epoch, offset)| cand(id, epoch, offset))
                            .collect(),
                        allow_unclean,
                    }
                }
            ),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn invariants_hold_over_any_command_sequence(
        cmds in proptest::collection::vec(command_strategy(), 0..40)
    ) {
        let mut state = ControllerState::default();
        let mut twin = ControllerState::default();
        // (set, master epoch) -> the master elected at that epoch.
        let mut masters: BTreeMap<(String, i32), i64> = BTreeMap::new();
        for cmd in &cmds {
            let before = state.clone();
            let applied = state.apply(cmd);
            // Deterministic: a second state fed the same commands ends up equal, answer too.
            prop_assert_eq!(&twin.apply(cmd), &applied);
            prop_assert_eq!(&twin, &state);
            if applied.code != ResponseCode::Success.value()
                && applied.code != ResponseCode::ControllerMasterNotAvailable.value()
            {
                prop_assert_eq!(&state, &before, "a refusal changed the state");
            }
            for (name, set) in &state.broker_sets {
                if let Some(master) = set.master {
                    prop_assert!(set.sync_state_set.contains(&master));
                    let first = masters.entry((name.clone(), set.master_epoch)).or_insert(master);
                    prop_assert_eq!(*first, master, "two masters at one epoch");
                }
                for id in &set.sync_state_set {
                    prop_assert!(set.brokers.contains_key(id));
                }
                if let Some(old) = before.broker_sets.get(name) {
                    prop_assert!(set.master_epoch >= old.master_epoch);
                    prop_assert!(set.sync_state_set_epoch >= old.sync_state_set_epoch);
                    if let Some(new) = set.master.filter(|m| Some(*m) != old.master) {
                        prop_assert_eq!(set.master_epoch, old.master_epoch + 1);
                        prop_assert_eq!(set.sync_state_set.len(), 1);
                        let Command::ElectMaster { alive, allow_unclean, broker_id, .. } = cmd
                        else {
                            return Err(TestCaseError::fail("only elections change the master"));
                        };
                        prop_assert!(alive.iter().any(|c| c.broker_id == new), "dead master");
                        let first = old.master_epoch == 0 && old.master.is_none();
                        let in_sync = old.sync_state_set.contains(&new);
                        prop_assert!(
                            in_sync || *allow_unclean || (first && *broker_id == Some(new)),
                            "master elected from outside the sync state set"
                        );
                    }
                }
            }
            // The entry round-trips through serde, as the log stores it.
            let json = serde_json::to_string(cmd).map_err(|e| TestCaseError::fail(e.to_string()))?;
            let back: Command = serde_json::from_str(&json)
                .map_err(|e| TestCaseError::fail(e.to_string()))?;
            prop_assert_eq!(&back, cmd);
        }
    }
}
