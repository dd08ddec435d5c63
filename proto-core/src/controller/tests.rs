//! Role-level tests of [`ControllerRole`]: requests in, proposals and answers out, with the
//! test playing the log (it takes each proposal and applies it back, as the raft adapter does).

use super::*;
use crate::body::SyncStateSet;
use crate::header::{
    ElectMasterResponseHeader, GetReplicaInfoResponseHeader, NotifyBrokerRoleChangedRequestHeader,
    RegisterBrokerToControllerResponseHeader,
};

const SELF_ID: u64 = 0;
const SELF_ADDR: &str = "10.0.0.100:9878";
const SET: &str = "broker-a";

fn config() -> ControllerConfig {
    ControllerConfig {
        controller_dleger_group: "group1".to_owned(),
        controller_dleger_peers: "n0-10.0.0.100:9877;n1-10.0.0.101:9877".to_owned(),
        self_id: SELF_ID,
        remoting_addr: SELF_ADDR.to_owned(),
        ..ControllerConfig::default()
    }
}

fn leading(now_ms: u64) -> ControllerRole {
    let mut role = ControllerRole::new(config());
    role.set_leadership(
        Leadership {
            is_leader: true,
            leader_id: Some(SELF_ID),
            leader_addr: Some(SELF_ADDR.to_owned()),
        },
        now_ms,
    );
    role
}

fn addr(id: i64) -> String {
    format!("10.0.0.{id}:10911")
}

fn register_request(id: i64, opaque: i32) -> RemotingCommand {
    let mut cmd = RemotingCommand::request(RequestCode::ControllerRegisterBroker.value(), opaque);
    let header = RegisterBrokerToControllerRequestHeader {
        cluster_name: "c".to_owned(),
        broker_name: SET.to_owned(),
        broker_id: id,
        broker_address: addr(id),
        invoke_time: 0,
    };
    encode_header(&mut cmd, &header);
    cmd
}

fn elect_request(id: i64, opaque: i32) -> RemotingCommand {
    let mut cmd = RemotingCommand::request(RequestCode::ControllerElectMaster.value(), opaque);
    let header = ElectMasterRequestHeader {
        cluster_name: "c".to_owned(),
        broker_name: SET.to_owned(),
        broker_id: id,
        designate_elect: false,
        invoke_time: 0,
    };
    encode_header(&mut cmd, &header);
    cmd
}

fn alter_request(master: i64, epoch: i32, set: &[i64], set_epoch: i32) -> RemotingCommand {
    let mut cmd = RemotingCommand::request(RequestCode::ControllerAlterSyncStateSet.value(), 77);
    let header = AlterSyncStateSetRequestHeader {
        broker_name: SET.to_owned(),
        master_broker_id: master,
        master_epoch: epoch,
        invoke_time: 0,
    };
    encode_header(&mut cmd, &header);
    let body = SyncStateSet {
        sync_state_set: set.iter().copied().collect(),
        sync_state_set_epoch: set_epoch,
    };
    cmd.with_body(body.encode())
}

fn heartbeat_request(id: i64, epoch: i32, max_offset: i64) -> RemotingCommand {
    let mut cmd = RemotingCommand::request(RequestCode::BrokerHeartbeat.value(), 5);
    let header = BrokerHeartbeatRequestHeader {
        cluster_name: "c".to_owned(),
        broker_addr: addr(id),
        broker_name: SET.to_owned(),
        broker_id: Some(id),
        epoch: Some(epoch),
        max_offset: Some(max_offset),
        confirm_offset: None,
        heartbeat_timeout_mills: Some(10_000),
        election_priority: None,
    };
    encode_header(&mut cmd, &header);
    cmd
}

/// Plays the log: applies every queued proposal in order, as committed entries.
fn commit_all(role: &mut ControllerRole, index: &mut u64, now_ms: u64) -> Vec<Applied> {
    let mut applied = Vec::new();
    while let Some(entry) = role.poll_proposal() {
        *index += 1;
        applied.push(role.apply(*index, &entry, now_ms));
    }
    applied
}

fn sends(role: &mut ControllerRole) -> Vec<RemotingCommand> {
    std::iter::from_fn(|| role.poll_transmit())
        .filter_map(|t| match t {
            Transmit::Send { cmd, .. } => Some(cmd),
            _ => None,
        })
        .collect()
}

fn only_send(role: &mut ControllerRole) -> RemotingCommand {
    let mut all = sends(role);
    assert_eq!(all.len(), 1, "{all:?}");
    all.remove(0)
}

/// Registers 1..=ids, elects 1 and grows the sync state set to all of them, all at `now_ms`.
fn with_master_one(role: &mut ControllerRole, ids: i64, index: &mut u64, now_ms: u64) {
    for id in 1..=ids {
        role.handle_command(ConnId(1), register_request(id, 10), now_ms);
    }
    // A broker asks for an election only after its registration is answered: the election's
    // alive set is taken from registered brokers when it is proposed.
    commit_all(role, index, now_ms);
    role.handle_command(ConnId(1), elect_request(1, 11), now_ms);
    commit_all(role, index, now_ms);
    let all: Vec<i64> = (1..=ids).collect();
    role.handle_command(ConnId(1), alter_request(1, 1, &all, 1), now_ms);
    commit_all(role, index, now_ms);
    let _ = std::iter::from_fn(|| role.poll_transmit()).count();
    let set = &role.state().broker_sets[SET];
    assert_eq!((set.master, set.sync_state_set.len()), (Some(1), all.len()));
}

#[test]
fn a_write_is_proposed_and_answered_when_its_entry_is_applied() {
    let mut role = leading(0);
    role.handle_command(ConnId(3), register_request(1, 42), 0);
    assert_eq!(role.poll_transmit(), None, "answered before commit");
    let entry = role
        .poll_proposal()
        .expect("the register became a proposal");
    assert_eq!(entry.proposer, SELF_ID);
    assert!(matches!(
        &entry.cmd,
        Command::RegisterBroker { broker_id: 1, .. }
    ));
    let applied = role.apply(1, &entry, 0);
    assert_eq!(applied.code, ResponseCode::Success.value());
    let Some(Transmit::Send { conn, cmd }) = role.poll_transmit() else {
        panic!("the proposer answers on apply");
    };
    assert_eq!((conn, cmd.opaque, cmd.code), (ConnId(3), 42, 0));
    let header: RegisterBrokerToControllerResponseHeader = decode_header(&cmd).expect("header");
    assert_eq!(header.broker_name.as_deref(), Some(SET));
    assert_eq!(header.master_broker_id, None, "no master yet");
    assert_eq!(
        SyncStateSet::decode(&cmd.body).ok(),
        Some(SyncStateSet::default())
    );

    // An election request naming itself makes 1 master; the answer says so.
    role.handle_command(ConnId(3), elect_request(1, 43), 0);
    commit_all(&mut role, &mut 1, 0);
    let answer = only_send(&mut role);
    let header: ElectMasterResponseHeader = decode_header(&answer).expect("header");
    assert_eq!(header.master_broker_id, Some(1));
    assert_eq!(header.master_address, Some(addr(1)));
    assert_eq!(header.master_epoch, Some(1));
}

#[test]
fn an_entry_delivered_again_is_not_applied_twice() {
    let mut role = leading(0);
    let mut index = 0;
    with_master_one(&mut role, 2, &mut index, 0);
    // The master falls silent; broker 2 keeps beating, so the scan proposes an election.
    for t in [5_000, 12_000] {
        role.handle_command(ConnId(2), heartbeat_request(2, 1, 50), t);
    }
    role.handle_timeout(15_000);
    let entry = role.poll_proposal().expect("the scan proposed an election");
    index += 1;
    let applied = role.apply(index, &entry, 15_000);
    assert_eq!(applied.code, ResponseCode::Success.value());
    assert!(applied.master_changed);
    let after = role.state().clone();
    let again = role.apply(index, &entry, 15_000);
    assert_eq!(again.code, ResponseCode::SystemError.value());
    assert_eq!(
        role.state(),
        &after,
        "a replayed election must not bump the epoch"
    );
}

#[test]
fn an_admin_designates_the_new_master() {
    let mut role = leading(0);
    let mut index = 0;
    with_master_one(&mut role, 3, &mut index, 0);
    let mut designate = elect_request(2, 50);
    encode_header(
        &mut designate,
        &ElectMasterRequestHeader {
            cluster_name: "c".to_owned(),
            broker_name: SET.to_owned(),
            broker_id: 2,
            designate_elect: true,
            invoke_time: 0,
        },
    );
    role.handle_command(ConnId(9), designate, 1_000);
    commit_all(&mut role, &mut index, 1_000);
    let answers = sends(&mut role);
    assert_eq!(answers.len(), 1, "{answers:?}");
    let header: ElectMasterResponseHeader = decode_header(&answers[0]).expect("header");
    assert_eq!(
        (header.master_broker_id, header.master_epoch),
        (Some(2), Some(2))
    );
    let set = &role.state().broker_sets[SET];
    assert_eq!(set.sync_state_set, BTreeSet::from([2]));

    // Without the designation flag the alive master simply stays.
    role.handle_command(ConnId(9), elect_request(3, 51), 1_000);
    commit_all(&mut role, &mut index, 1_000);
    let answer = only_send(&mut role);
    assert_eq!(
        answer.code,
        ResponseCode::ControllerMasterStillExist.value()
    );
    assert_eq!(role.state().broker_sets[SET].master, Some(2));
}

#[test]
fn another_controller_s_entries_change_state_but_answer_nobody() {
    let mut role = leading(0);
    let entry = Entry {
        proposer: 9,
        id: 1,
        cmd: Command::RegisterBroker {
            cluster_name: "c".to_owned(),
            broker_name: SET.to_owned(),
            broker_id: 2,
            broker_address: addr(2),
        },
    };
    role.apply(1, &entry, 0);
    assert_eq!(role.poll_transmit(), None);
    assert!(role.state().broker_sets[SET].brokers.contains_key(&2));
}

#[test]
fn a_follower_answers_not_leader_with_the_leader_s_address() {
    let mut role = ControllerRole::new(config());
    role.set_leadership(
        Leadership {
            is_leader: false,
            leader_id: Some(1),
            leader_addr: Some("10.0.0.101:9878".to_owned()),
        },
        0,
    );
    role.handle_command(ConnId(1), register_request(1, 1), 0);
    role.handle_command(ConnId(1), heartbeat_request(1, 0, 0), 0);
    let mut replica = RemotingCommand::request(RequestCode::ControllerGetReplicaInfo.value(), 3);
    encode_header(
        &mut replica,
        &GetReplicaInfoRequestHeader {
            broker_name: SET.to_owned(),
        },
    );
    role.handle_command(ConnId(1), replica, 0);
    let answers = sends(&mut role);
    assert_eq!(answers.len(), 3);
    // The heartbeat is kept (a follower may lead next); the register and the read are refused.
    assert_eq!(answers[1].code, ResponseCode::Success.value());
    assert!(role.liveness().live(SET, 1).is_some());
    for answer in [&answers[0], &answers[2]] {
        assert_eq!(answer.code, ResponseCode::ControllerNotLeader.value());
        assert_eq!(answer.remark.as_deref(), Some("10.0.0.101:9878"));
    }
    assert_eq!(role.poll_proposal(), None);

    // Metadata comes from anyone.
    let meta = RemotingCommand::request(RequestCode::ControllerGetMetadataInfo.value(), 4);
    role.handle_command(ConnId(1), meta, 0);
    let answer = only_send(&mut role);
    let header: GetMetaDataResponseHeader = decode_header(&answer).expect("header");
    assert_eq!(
        header.controller_leader_address.as_deref(),
        Some("10.0.0.101:9878")
    );
    assert_eq!(header.controller_leader_id.as_deref(), Some("n1"));
    assert!(!header.is_leader);
    assert_eq!(header.group.as_deref(), Some("group1"));
}

#[test]
fn the_leader_reports_itself_and_answers_reads() {
    let mut role = leading(0);
    let mut index = 0;
    with_master_one(&mut role, 2, &mut index, 0);
    let meta = RemotingCommand::request(RequestCode::ControllerGetMetadataInfo.value(), 4);
    role.handle_command(ConnId(1), meta, 0);
    let header: GetMetaDataResponseHeader = decode_header(&only_send(&mut role)).expect("header");
    assert_eq!(header.controller_leader_address.as_deref(), Some(SELF_ADDR));
    assert!(header.is_leader);

    let mut replica = RemotingCommand::request(RequestCode::ControllerGetReplicaInfo.value(), 3);
    encode_header(
        &mut replica,
        &GetReplicaInfoRequestHeader {
            broker_name: SET.to_owned(),
        },
    );
    role.handle_command(ConnId(1), replica, 0);
    let answer = only_send(&mut role);
    let header: GetReplicaInfoResponseHeader = decode_header(&answer).expect("header");
    assert_eq!(
        (header.master_broker_id, header.master_epoch),
        (Some(1), Some(1))
    );
    let body = SyncStateSet::decode(&answer.body).expect("body");
    assert_eq!(body.sync_state_set, BTreeSet::from([1, 2]));
    assert_eq!(body.sync_state_set_epoch, 2);

    let data = RemotingCommand::request(RequestCode::ControllerGetSyncStateData.value(), 6)
        .with_body(br#"["broker-a"]"#.to_vec());
    role.handle_command(ConnId(1), data, 0);
    let answer = only_send(&mut role);
    let body = crate::body::BrokerReplicasInfo::decode(&answer.body).expect("body");
    let info = &body.replicas_info_table[SET];
    assert_eq!(info.in_sync_replicas.len(), 2);
    assert_eq!(info.master_address, Some(addr(1)));
}

#[test]
fn a_silent_master_is_replaced_by_an_alive_in_sync_broker_and_brokers_are_told() {
    let mut role = leading(0);
    let mut index = 0;
    with_master_one(&mut role, 3, &mut index, 0);
    // Past the grace period only 2 and 3 keep beating; 3 has the longer log.
    for t in [5_000, 12_000] {
        role.handle_command(ConnId(2), heartbeat_request(2, 1, 50), t);
        role.handle_command(ConnId(3), heartbeat_request(3, 1, 80), t);
    }
    role.handle_command(ConnId(1), heartbeat_request(1, 1, 80), 1_000);
    assert!(sends(&mut role).iter().all(|a| a.code == 0));
    role.handle_timeout(15_000);
    let entry = role
        .poll_proposal()
        .expect("an election for the silent master");
    let Command::ElectMaster {
        broker_id, alive, ..
    } = &entry.cmd
    else {
        panic!("expected an election, got {:?}", entry.cmd);
    };
    assert_eq!(*broker_id, None);
    let alive_ids: Vec<i64> = alive.iter().map(|c| c.broker_id).collect();
    assert_eq!(alive_ids, vec![2, 3]);
    assert_eq!(alive[1].max_offset, 80);
    // No second election for the same set while the first is in flight.
    role.handle_timeout(20_000);
    assert_eq!(role.poll_proposal(), None);

    index += 1;
    let applied = role.apply(index, &entry, 20_000);
    assert!(applied.master_changed);
    assert_eq!(role.state().broker_sets[SET].master, Some(3));
    let notices: Vec<(String, RemotingCommand)> = std::iter::from_fn(|| role.poll_transmit())
        .filter_map(|t| match t {
            Transmit::Request { addr, cmd } => Some((addr, cmd)),
            _ => None,
        })
        .collect();
    let to: Vec<&str> = notices.iter().map(|(a, _)| a.as_str()).collect();
    assert_eq!(
        to,
        vec![addr(2).as_str(), addr(3).as_str()],
        "alive brokers only"
    );
    let (_, notice) = &notices[0];
    assert_eq!(notice.code, RequestCode::NotifyBrokerRoleChanged.value());
    assert!(notice.is_oneway());
    let header: NotifyBrokerRoleChangedRequestHeader = decode_header(notice).expect("header");
    assert_eq!(
        (header.master_broker_id, header.master_epoch),
        (Some(3), Some(2))
    );
    assert_eq!(header.master_address, Some(addr(3)));
}

#[test]
fn a_new_leader_waits_one_timeout_before_judging_liveness() {
    let mut role = leading(0);
    let mut index = 0;
    with_master_one(&mut role, 2, &mut index, 0);
    role.set_leadership(Leadership::default(), 50_000);
    role.set_leadership(
        Leadership {
            is_leader: true,
            leader_id: Some(SELF_ID),
            leader_addr: None,
        },
        100_000,
    );
    // Nobody has beaten since we took over, but the grace period (10 s) is not over.
    role.handle_timeout(105_000);
    assert_eq!(role.poll_proposal(), None);
    assert!(role.next_timeout().is_some_and(|t| t <= 110_000));
    role.handle_timeout(110_000);
    let entry = role
        .poll_proposal()
        .expect("after the grace period the master is judged");
    assert!(matches!(
        entry.cmd,
        Command::ElectMaster {
            broker_id: None,
            ..
        }
    ));
}

#[test]
fn refused_and_lost_proposals_are_answered() {
    let mut role = leading(0);
    role.handle_command(ConnId(1), register_request(1, 1), 0);
    let entry = role.poll_proposal().expect("proposal");
    role.proposal_failed(entry.id, Some("10.0.0.101:9878".to_owned()), 0);
    let answer = only_send(&mut role);
    assert_eq!(answer.code, ResponseCode::ControllerNotLeader.value());
    assert_eq!(answer.remark.as_deref(), Some("10.0.0.101:9878"));
    // Applying it later (it did commit after all) answers nobody twice.
    role.apply(1, &entry, 0);
    assert_eq!(role.poll_transmit(), None);

    role.handle_command(ConnId(1), register_request(2, 2), 1_000);
    let _taken = role.poll_proposal().expect("proposal");
    role.handle_timeout(1_000 + PROPOSAL_TIMEOUT_MS - 1);
    assert_eq!(role.poll_transmit(), None, "answered before its deadline");
    role.handle_timeout(1_000 + PROPOSAL_TIMEOUT_MS);
    let answer = only_send(&mut role);
    assert_eq!(answer.code, ResponseCode::SystemError.value());

    // A proposal not yet taken when leadership goes is refused at once.
    role.handle_command(ConnId(1), register_request(3, 3), 2_000);
    role.set_leadership(Leadership::default(), 2_000);
    assert_eq!(role.poll_proposal(), None);
    assert_eq!(
        only_send(&mut role).code,
        ResponseCode::ControllerNotLeader.value()
    );
}

#[test]
fn pending_proposals_are_bounded() {
    let mut role = leading(0);
    for n in 0..PENDING_MAX {
        role.handle_command(ConnId(1), register_request(1, n as i32), 0);
    }
    assert_eq!(role.poll_transmit(), None);
    role.handle_command(ConnId(1), register_request(1, -1), 0);
    let answer = only_send(&mut role);
    assert_eq!(
        (answer.opaque, answer.code),
        (-1, ResponseCode::SystemBusy.value())
    );
}

#[test]
fn bad_and_unknown_requests_get_error_codes() {
    let mut role = leading(0);
    let mut bad = RemotingCommand::request(RequestCode::ControllerRegisterBroker.value(), 1);
    bad.ext_fields_mut().insert("brokerName", SET);
    role.handle_command(ConnId(1), bad, 0);
    let alter = alter_request(1, 1, &[1], 0).with_body(b"{not json".to_vec());
    role.handle_command(ConnId(1), alter, 0);
    let unknown = RemotingCommand::request(RequestCode::ControllerApplyBrokerId.value(), 3);
    role.handle_command(ConnId(1), unknown, 0);
    let codes: Vec<i32> = sends(&mut role).iter().map(|a| a.code).collect();
    assert_eq!(
        codes,
        vec![
            ResponseCode::SystemError.value(),
            ResponseCode::SystemError.value(),
            ResponseCode::RequestCodeNotSupported.value(),
        ]
    );
    assert_eq!(role.poll_proposal(), None);
}

#[test]
fn a_fenced_alter_is_answered_with_its_code() {
    let mut role = leading(0);
    let mut index = 0;
    with_master_one(&mut role, 2, &mut index, 0);
    role.handle_command(ConnId(1), alter_request(1, 0, &[1], 2), 0);
    commit_all(&mut role, &mut index, 0);
    let answer = only_send(&mut role);
    assert_eq!(
        answer.code,
        ResponseCode::ControllerFencedMasterEpoch.value()
    );
    assert!(answer.remark.is_some());
}
