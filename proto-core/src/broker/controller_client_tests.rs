//! Controller mode on the broker, driven by a fake controller group written out in each test:
//! the broker's requests are read from its transmits and answered by hand.

use std::collections::BTreeSet;

use store_core::storage::MemStorage;

use super::*;
use crate::broker::test_support::{send_message, sent_to, small_store};
use crate::broker::BrokerConfig;
use crate::header::{CommandHeader, RegisterBrokerRequestHeader};
use crate::role::{ConnId, Role};

const NOW: u64 = 1_700_000_000_000;
const CONTROLLERS: [&str; 3] = ["10.0.0.1:9878", "10.0.0.2:9878", "10.0.0.3:9878"];
const LEADER: &str = "10.0.0.2:9878";
const NAMESRV: &str = "10.0.0.9:9876";
/// This broker's id, and another broker of the same set.
const ME: i64 = 2;
const OTHER: i64 = 1;
const OTHER_ADDR: &str = "10.0.0.5:10911";
/// The connection the controller's answers come back on, and a producer's.
const CONTROLLER_CONN: ConnId = ConnId(u64::MAX);
const PRODUCER: u64 = 1;

fn config() -> BrokerConfig {
    let mut config = BrokerConfig {
        broker_id: ME,
        namesrv_addrs: vec![NAMESRV.to_string()],
        store: small_store(),
        ..BrokerConfig::default()
    };
    config.ha.controller_mode = true;
    config.ha.all_ack_in_sync_state_set = true;
    config.controller.controller_addrs = CONTROLLERS.iter().map(|a| a.to_string()).collect();
    config
}

struct Rig {
    b: Broker<MemStorage>,
}

/// One request the broker sent: where to, and what.
type Sent = (String, RemotingCommand);

fn requests(transmits: &[Transmit], code: RequestCode) -> Vec<Sent> {
    transmits
        .iter()
        .filter_map(|t| match t {
            Transmit::Request { addr, cmd } if cmd.code == code.value() => {
                Some((addr.clone(), cmd.clone()))
            }
            _ => None,
        })
        .collect()
}

fn one(transmits: &[Transmit], code: RequestCode) -> Sent {
    let mut found = requests(transmits, code);
    assert_eq!(found.len(), 1, "one {code:?} expected in {transmits:?}");
    found.remove(0)
}

/// The brokerId of the REGISTER_BROKER to the name server among `transmits`.
fn registered_id(transmits: &[Transmit]) -> Option<i64> {
    let (addr, cmd) = requests(transmits, RequestCode::RegisterBroker).pop()?;
    assert_eq!(addr, NAMESRV);
    let header: RegisterBrokerRequestHeader = decode_header(&cmd).unwrap();
    Some(header.broker_id)
}

fn response(
    request: &RemotingCommand,
    code: ResponseCode,
    header: Option<&dyn Fn(&mut RemotingCommand)>,
    set: Option<SyncStateSet>,
) -> RemotingCommand {
    let mut cmd = RemotingCommand::response_to(request, code.value(), None);
    if let Some(fill) = header {
        fill(&mut cmd);
    }
    match set {
        Some(set) => cmd.with_body(set.encode()),
        None => cmd,
    }
}

fn set(ids: &[i64], epoch: i32) -> SyncStateSet {
    SyncStateSet {
        sync_state_set: ids.iter().copied().collect(),
        sync_state_set_epoch: epoch,
    }
}

/// Replica info as the controller answers it: `master` (id, address, epoch) or none.
fn replica_info(
    request: &RemotingCommand,
    master: Option<(i64, &str, i32)>,
    sync: SyncStateSet,
) -> RemotingCommand {
    let header = GetReplicaInfoResponseHeader {
        master_broker_id: master.map(|m| m.0),
        master_address: master.map(|m| m.1.to_string()),
        master_epoch: master.map(|m| m.2),
    };
    response(
        request,
        ResponseCode::Success,
        Some(&|cmd: &mut RemotingCommand| encode_header(cmd, &header)),
        Some(sync),
    )
}

/// The controller's answer to `request`: this broker is master at `epoch`, alone in a sync
/// state set of epoch `set_epoch`.
fn elected_me(request: &RemotingCommand, epoch: i32, set_epoch: i32) -> RemotingCommand {
    let header = ElectMasterResponseHeader {
        master_broker_id: Some(ME),
        master_address: Some("127.0.0.1:10911".into()),
        master_epoch: Some(epoch),
        sync_state_set_epoch: Some(set_epoch),
    };
    response(
        request,
        ResponseCode::Success,
        Some(&|cmd: &mut RemotingCommand| encode_header(cmd, &header)),
        Some(set(&[ME], set_epoch)),
    )
}

impl Rig {
    /// A controller-mode broker that has just started (first timers run).
    fn start() -> (Rig, Vec<Transmit>) {
        let (b, _) = Broker::new(config(), MemStorage::new(), NOW).unwrap();
        let mut rig = Rig { b };
        rig.b.handle_connected(
            ConnId(PRODUCER),
            "127.0.0.1:40001".parse().unwrap(),
            None,
            NOW,
        );
        let t = rig.step(NOW);
        (rig, t)
    }

    /// Runs the timers due at `now` and drains the turn.
    fn step(&mut self, now: u64) -> Vec<Transmit> {
        self.b.handle_timeout(now);
        self.drain(now)
    }

    fn drain(&mut self, now: u64) -> Vec<Transmit> {
        self.b.handle_turn_end(now);
        std::iter::from_fn(|| self.b.poll_transmit()).collect()
    }

    /// Delivers a controller's answer.
    fn answer(&mut self, cmd: RemotingCommand, now: u64) -> Vec<Transmit> {
        self.b.handle_command(CONTROLLER_CONN, cmd, now);
        self.drain(now)
    }

    /// Started, leader found (LEADER), registered with the controller answering `master`.
    /// Returns what the registration answer made the broker send.
    fn registered(master: Option<(i64, &str, i32)>, sync: SyncStateSet) -> (Rig, Vec<Transmit>) {
        let (mut rig, t) = Rig::start();
        let metadata = requests(&t, RequestCode::ControllerGetMetadataInfo);
        let header = GetMetaDataResponseHeader {
            group: Some("DefaultControllerGroup".into()),
            controller_leader_id: Some("n1".into()),
            controller_leader_address: Some(LEADER.into()),
            is_leader: false,
            peers: None,
        };
        let answer = response(
            &metadata[0].1,
            ResponseCode::Success,
            Some(&|cmd: &mut RemotingCommand| encode_header(cmd, &header)),
            None,
        );
        let t = rig.answer(answer, NOW);
        let (addr, register) = one(&t, RequestCode::ControllerRegisterBroker);
        assert_eq!(addr, LEADER);
        let header = RegisterBrokerToControllerResponseHeader {
            cluster_name: Some("DefaultCluster".into()),
            broker_name: Some("broker-a".into()),
            master_broker_id: master.map(|m| m.0),
            master_address: master.map(|m| m.1.to_string()),
            master_epoch: master.map(|m| m.2),
            sync_state_set_epoch: Some(sync.sync_state_set_epoch),
        };
        let answer = response(
            &register,
            ResponseCode::Success,
            Some(&|cmd: &mut RemotingCommand| encode_header(cmd, &header)),
            Some(sync),
        );
        let t = rig.answer(answer, NOW);
        (rig, t)
    }

    /// Sends a message as the producer; returns the response code.
    fn send(&mut self, now: u64) -> i32 {
        let mut cmd = send_message("Demo", 0, "", bytes::Bytes::from_static(b"hello"));
        cmd.opaque = 77;
        self.b.handle_command(ConnId(PRODUCER), cmd, now);
        let t = self.drain(now);
        let answers = sent_to(&t, PRODUCER);
        assert_eq!(answers.len(), 1, "{t:?}");
        answers[0].code
    }

    fn master(&self) -> Option<(i32, i64)> {
        self.b.controller_master()
    }
}

#[test]
fn finds_the_leader_registers_heartbeats_on_time_and_polls_replica_info() {
    let (_first, t) = Rig::start();
    let asked: BTreeSet<String> = requests(&t, RequestCode::ControllerGetMetadataInfo)
        .into_iter()
        .map(|(addr, _)| addr)
        .collect();
    assert_eq!(asked, CONTROLLERS.iter().map(|a| a.to_string()).collect());
    assert!(requests(&t, RequestCode::ControllerRegisterBroker).is_empty());

    let (mut rig2, t) = Rig::registered(Some((ME, "127.0.0.1:10911", 1)), set(&[ME], 1));
    let beats = requests(&t, RequestCode::BrokerHeartbeat);
    assert_eq!(beats.len(), 3, "a heartbeat to every controller at once");
    let header: BrokerHeartbeatRequestHeader = decode_header(&beats[0].1).unwrap();
    assert!(beats[0].1.is_oneway());
    assert_eq!(header.broker_id, Some(ME));
    assert_eq!(header.heartbeat_timeout_mills, Some(10_000));
    assert_eq!(header.epoch, Some(1), "the epoch it became master at");
    assert_eq!(header.max_offset, Some(0));

    // The next heartbeats come every brokerHeartbeatInterval, not before.
    assert!(rig2.b.next_timeout().is_some_and(|at| at <= NOW + 1_000));
    let t = rig2.step(NOW + 999);
    assert!(requests(&t, RequestCode::BrokerHeartbeat).is_empty());
    let t = rig2.step(NOW + 1_000);
    assert_eq!(requests(&t, RequestCode::BrokerHeartbeat).len(), 3);
    assert!(requests(&t, RequestCode::ControllerGetReplicaInfo).is_empty());
    // Replica info every syncBrokerMetadataPeriod, to the leader.
    let t = rig2.step(NOW + 5_000);
    let (addr, cmd) = one(&t, RequestCode::ControllerGetReplicaInfo);
    assert_eq!(addr, LEADER);
    let header: GetReplicaInfoRequestHeader = decode_header(&cmd).unwrap();
    assert_eq!(header.broker_name, "broker-a");
}

#[test]
fn the_register_request_names_the_configured_id_and_address() {
    let (mut rig, t) = Rig::start();
    let metadata = requests(&t, RequestCode::ControllerGetMetadataInfo);
    let header = GetMetaDataResponseHeader {
        group: None,
        controller_leader_id: None,
        controller_leader_address: Some(LEADER.into()),
        is_leader: true,
        peers: None,
    };
    let answer = response(
        &metadata[2].1,
        ResponseCode::Success,
        Some(&|cmd: &mut RemotingCommand| encode_header(cmd, &header)),
        None,
    );
    let t = rig.answer(answer, NOW);
    let (_, cmd) = one(&t, RequestCode::ControllerRegisterBroker);
    let header = RegisterBrokerToControllerRequestHeader::decode(cmd.ext_fields.as_ref().unwrap());
    let header = header.unwrap();
    assert_eq!(header.broker_id, ME);
    assert_eq!(header.broker_address, "127.0.0.1:10911");
    assert_eq!(header.broker_name, "broker-a");
}

#[test]
fn refuses_sends_until_named_master_then_takes_them_and_registers_as_master_id() {
    let (mut rig, _) = Rig::start();
    assert_eq!(rig.b.broker_role(), BrokerRole::Slave);
    assert_eq!(rig.send(NOW), ResponseCode::ServiceNotAvailable.value());

    let (mut rig, t) = Rig::registered(None, set(&[], 0));
    assert_eq!(rig.send(NOW), ResponseCode::ServiceNotAvailable.value());
    // No master: the broker asks for an election naming itself.
    let (addr, elect) = one(&t, RequestCode::ControllerElectMaster);
    assert_eq!(addr, LEADER);
    let header: ElectMasterRequestHeader = decode_header(&elect).unwrap();
    assert_eq!((header.broker_id, header.designate_elect), (ME, false));
    let refusal = RemotingCommand::response_to(
        &elect,
        ResponseCode::ControllerElectMasterFailed.value(),
        Some("no eligible broker".into()),
    );
    rig.answer(refusal, NOW);
    assert_eq!(rig.b.broker_role(), BrokerRole::Slave);

    // The poll names this broker master at epoch 1.
    let t = rig.step(NOW + 5_000);
    let (_, poll) = one(&t, RequestCode::ControllerGetReplicaInfo);
    let t = rig.answer(
        replica_info(&poll, Some((ME, "127.0.0.1:10911", 1)), set(&[ME], 1)),
        NOW + 5_000,
    );
    assert_eq!(rig.b.broker_role(), BrokerRole::SyncMaster);
    assert_eq!(rig.master(), Some((1, ME)));
    assert_eq!(rig.b.ha_view().epoch, 1);
    assert_eq!(
        registered_id(&t),
        Some(0),
        "a master registers as brokerId 0"
    );
    let recorded = rig
        .b
        .store()
        .epochs()
        .last()
        .map(|e| (e.epoch, e.start_offset));
    assert_eq!(
        recorded,
        Some((1, 0)),
        "the epoch file says where epoch 1 starts"
    );
    assert_eq!(rig.send(NOW + 5_000), ResponseCode::Success.value());
}

#[test]
fn an_election_answer_naming_this_broker_makes_it_master() {
    let (mut rig, t) = Rig::registered(None, set(&[], 0));
    let (_, elect) = one(&t, RequestCode::ControllerElectMaster);
    let answer = elected_me(&elect, 4, 5);
    let t = rig.answer(answer, NOW);
    assert_eq!(rig.master(), Some((4, ME)));
    assert_eq!(rig.b.broker_role(), BrokerRole::SyncMaster);
    assert_eq!(registered_id(&t), Some(0));
    let (committed, epoch) = rig.b.ha.replicas.sync_state_set();
    assert_eq!((committed.clone(), epoch), ([ME as u64].into(), 5));
}

#[test]
fn becomes_the_slave_of_another_broker_and_follows_its_ha_port() {
    let (mut rig, t) = Rig::registered(Some((OTHER, OTHER_ADDR, 3)), set(&[OTHER], 2));
    assert_eq!(rig.b.broker_role(), BrokerRole::Slave);
    assert_eq!(rig.master(), Some((3, OTHER)));
    let view = rig.b.ha_view();
    assert_eq!(view.epoch, 3);
    assert_eq!(view.master_ha_addr.as_deref(), Some("10.0.0.5:10912"));
    assert_eq!(
        registered_id(&t),
        Some(ME),
        "a slave registers under its own id"
    );
    assert!(requests(&t, RequestCode::ControllerElectMaster).is_empty());
    assert_eq!(rig.send(NOW), ResponseCode::ServiceNotAvailable.value());
    // The name server's idea of the master does not override the controller's.
    let mut answer = RemotingCommand::response_to(
        &RemotingCommand::request(RequestCode::RegisterBroker.value(), 12_345),
        ResponseCode::Success.value(),
        None,
    );
    answer
        .ext_fields_mut()
        .insert("haServerAddr", "10.0.0.8:10912");
    answer
        .ext_fields_mut()
        .insert("masterAddr", "10.0.0.8:10911");
    rig.answer(answer, NOW);
    assert_eq!(
        rig.b.ha_view().master_ha_addr.as_deref(),
        Some("10.0.0.5:10912")
    );
    // One naming the controller's master tells its real HA port.
    let mut answer = RemotingCommand::response_to(
        &RemotingCommand::request(RequestCode::RegisterBroker.value(), 12_346),
        ResponseCode::Success.value(),
        None,
    );
    answer
        .ext_fields_mut()
        .insert("haServerAddr", "10.0.0.5:20000");
    answer.ext_fields_mut().insert("masterAddr", OTHER_ADDR);
    rig.answer(answer, NOW);
    assert_eq!(
        rig.b.ha_view().master_ha_addr.as_deref(),
        Some("10.0.0.5:20000")
    );
}

#[test]
fn a_stale_epoch_is_ignored_and_a_newer_one_acted_on() {
    let (mut rig, _) = Rig::registered(Some((OTHER, OTHER_ADDR, 3)), set(&[OTHER], 2));
    // A late notice of an older election naming this broker: ignored, still answered.
    let header = NotifyBrokerRoleChangedRequestHeader {
        master_address: Some("127.0.0.1:10911".into()),
        master_epoch: Some(2),
        sync_state_set_epoch: Some(1),
        master_broker_id: Some(ME),
        broker_name: Some("broker-a".into()),
    };
    let mut notify = RemotingCommand::request(RequestCode::NotifyBrokerRoleChanged.value(), 9);
    encode_header(&mut notify, &header);
    let notify = notify.with_body(set(&[ME], 1).encode());
    rig.b.handle_command(ConnId(50), notify.clone(), NOW);
    let t = rig.drain(NOW);
    let answers = sent_to(&t, 50);
    assert_eq!(answers[0].code, ResponseCode::Success.value());
    assert_eq!(rig.b.broker_role(), BrokerRole::Slave);
    assert_eq!(rig.master(), Some((3, OTHER)));
    assert_eq!(
        registered_id(&t),
        None,
        "nothing changed, nothing to register"
    );

    // The same notice at a newer epoch promotes it.
    let header = NotifyBrokerRoleChangedRequestHeader {
        master_epoch: Some(4),
        sync_state_set_epoch: Some(3),
        ..header
    };
    let mut notify = RemotingCommand::request(RequestCode::NotifyBrokerRoleChanged.value(), 10);
    encode_header(&mut notify, &header);
    let notify = notify.with_body(set(&[ME], 3).encode());
    rig.b.handle_command(ConnId(50), notify, NOW + 1);
    let t = rig.drain(NOW + 1);
    assert_eq!(rig.b.broker_role(), BrokerRole::SyncMaster);
    assert_eq!(rig.master(), Some((4, ME)));
    assert_eq!(registered_id(&t), Some(0));

    // A poll answer still naming the old master at epoch 3 changes nothing.
    let t = rig.step(NOW + 5_000);
    let (_, poll) = one(&t, RequestCode::ControllerGetReplicaInfo);
    rig.answer(
        replica_info(&poll, Some((OTHER, OTHER_ADDR, 3)), set(&[OTHER], 2)),
        NOW + 5_000,
    );
    assert_eq!(rig.b.broker_role(), BrokerRole::SyncMaster);
    assert_eq!(rig.master(), Some((4, ME)));
}

#[test]
fn a_notice_about_another_broker_set_is_ignored() {
    let (mut rig, _) = Rig::registered(Some((OTHER, OTHER_ADDR, 3)), set(&[OTHER], 2));
    let header = NotifyBrokerRoleChangedRequestHeader {
        master_address: Some("127.0.0.1:10911".into()),
        master_epoch: Some(9),
        sync_state_set_epoch: Some(9),
        master_broker_id: Some(ME),
        broker_name: Some("broker-b".into()),
    };
    let mut notify = RemotingCommand::request(RequestCode::NotifyBrokerRoleChanged.value(), 9);
    encode_header(&mut notify, &header);
    rig.b.handle_command(ConnId(50), notify, NOW);
    rig.drain(NOW);
    assert_eq!(rig.b.broker_role(), BrokerRole::Slave);
    assert_eq!(rig.master(), Some((3, OTHER)));
}

#[test]
fn a_masterless_poll_asks_for_an_election_and_a_slave_is_promoted_after_failover() {
    let (mut rig, _) = Rig::registered(Some((OTHER, OTHER_ADDR, 3)), set(&[OTHER, ME], 4));
    // The master died; the controller found nobody eligible yet.
    let t = rig.step(NOW + 5_000);
    let (_, poll) = one(&t, RequestCode::ControllerGetReplicaInfo);
    let t = rig.answer(replica_info(&poll, None, set(&[OTHER, ME], 4)), NOW + 5_000);
    let (_, elect) = one(&t, RequestCode::ControllerElectMaster);
    let header: ElectMasterRequestHeader = decode_header(&elect).unwrap();
    assert_eq!(header.broker_id, ME);
    // Only one election at a time.
    rig.b.handle_timeout(NOW + 5_001);
    let t = rig.drain(NOW + 5_001);
    assert!(requests(&t, RequestCode::ControllerElectMaster).is_empty());
    // The controller elects this broker at epoch 4.
    let answer = elected_me(&elect, 4, 5);
    let t = rig.answer(answer, NOW + 5_002);
    assert_eq!(rig.b.broker_role(), BrokerRole::SyncMaster);
    assert_eq!(registered_id(&t), Some(0));
    assert_eq!(rig.send(NOW + 5_002), ResponseCode::Success.value());
    // Its epoch entry starts where its log ended when it took over, before the new send.
    let max = rig.b.store().commit_log_max_offset();
    let recorded = rig
        .b
        .store()
        .epochs()
        .last()
        .map(|e| (e.epoch, e.start_offset));
    assert_eq!(recorded, Some((4, 0)));
    assert!(max > 0);
    // The next heartbeat carries the epoch whose data it holds.
    let t = rig.step(NOW + 6_000);
    let beats = requests(&t, RequestCode::BrokerHeartbeat);
    let header: BrokerHeartbeatRequestHeader = decode_header(&beats[0].1).unwrap();
    assert_eq!(header.epoch, Some(4));
    assert_eq!(header.max_offset, Some(i64::try_from(max).unwrap()));
}

#[test]
fn not_leader_answers_redirect_to_the_named_leader() {
    let (mut rig, t) = Rig::start();
    let metadata = requests(&t, RequestCode::ControllerGetMetadataInfo);
    let header = GetMetaDataResponseHeader {
        group: None,
        controller_leader_id: None,
        controller_leader_address: Some(CONTROLLERS[0].into()),
        is_leader: false,
        peers: None,
    };
    let answer = response(
        &metadata[1].1,
        ResponseCode::Success,
        Some(&|cmd: &mut RemotingCommand| encode_header(cmd, &header)),
        None,
    );
    let t = rig.answer(answer, NOW);
    let (addr, register) = one(&t, RequestCode::ControllerRegisterBroker);
    assert_eq!(addr, CONTROLLERS[0]);
    // Leadership moved on: the old leader names the new one.
    let refusal = RemotingCommand::response_to(
        &register,
        ResponseCode::ControllerNotLeader.value(),
        Some(CONTROLLERS[2].to_string()),
    );
    let t = rig.answer(refusal, NOW + 10);
    let (addr, _) = one(&t, RequestCode::ControllerRegisterBroker);
    assert_eq!(addr, CONTROLLERS[2]);
}

#[test]
fn an_unanswered_request_makes_the_broker_look_for_the_leader_again() {
    let (mut rig, _) = Rig::registered(Some((OTHER, OTHER_ADDR, 3)), set(&[OTHER], 2));
    let t = rig.step(NOW + 5_000);
    one(&t, RequestCode::ControllerGetReplicaInfo);
    let t = rig.step(NOW + 5_000 + REQUEST_TIMEOUT_MS - 1);
    assert!(requests(&t, RequestCode::ControllerGetMetadataInfo).is_empty());
    let t = rig.step(NOW + 5_000 + REQUEST_TIMEOUT_MS);
    assert_eq!(
        requests(&t, RequestCode::ControllerGetMetadataInfo).len(),
        3,
        "every controller asked again"
    );
    // Heartbeats go on meanwhile (to every controller, leader or not).
    let t = rig.step(NOW + 9_000);
    assert_eq!(requests(&t, RequestCode::BrokerHeartbeat).len(), 3);
}

#[test]
fn a_failed_dial_to_the_leader_makes_the_broker_look_for_it_again() {
    let (mut rig, _) = Rig::registered(Some((OTHER, OTHER_ADDR, 3)), set(&[OTHER], 2));
    let t = rig.step(NOW + 5_000);
    let (addr, poll) = one(&t, RequestCode::ControllerGetReplicaInfo);
    rig.b.handle_peer_failed(&addr, &poll, NOW + 5_010);
    rig.b.handle_timeout(NOW + 5_010);
    let t = rig.drain(NOW + 5_010);
    assert_eq!(
        requests(&t, RequestCode::ControllerGetMetadataInfo).len(),
        3
    );
}

#[test]
fn a_master_proposes_a_caught_up_slave_for_the_sync_state_set() {
    let (mut rig, _) = Rig::registered(Some((ME, "127.0.0.1:10911", 1)), set(&[ME], 1));
    assert_eq!(rig.send(NOW), ResponseCode::Success.value());
    // Slave broker 1 connects to the HA port and catches up.
    let slave = rig
        .b
        .ha_slave_connected("10.0.0.5:40000".parse().unwrap(), NOW);
    rig.b.ha.replicas.set_slave_broker_id(slave, OTHER as u64);
    rig.b.ha_slave_report(slave, 0, NOW);
    while rig.b.ha_transfer(slave, NOW).is_some() {}
    let max = rig.b.store().commit_log_max_offset();
    rig.b.ha_slave_report(slave, max, NOW + 1);
    // Nothing is proposed before checkSyncStateSetPeriod.
    let t = rig.step(NOW + 4_999);
    assert!(requests(&t, RequestCode::ControllerAlterSyncStateSet).is_empty());
    let t = rig.step(NOW + 5_000);
    let (addr, alter) = one(&t, RequestCode::ControllerAlterSyncStateSet);
    assert_eq!(addr, LEADER);
    let header: AlterSyncStateSetRequestHeader = decode_header(&alter).unwrap();
    assert_eq!((header.master_broker_id, header.master_epoch), (ME, 1));
    let proposed = SyncStateSet::decode(&alter.body).unwrap();
    assert_eq!(
        proposed,
        set(&[OTHER, ME], 1),
        "the new set, with the epoch held"
    );
    // While in flight, the proposal counts.
    assert!(rig.b.ha.replicas.proposed_sync_state_set().is_some());
    let answer = response(
        &alter,
        ResponseCode::Success,
        Some(&|cmd: &mut RemotingCommand| {
            encode_header(
                cmd,
                &crate::header::AlterSyncStateSetResponseHeader {
                    new_sync_state_set_epoch: 2,
                },
            )
        }),
        Some(set(&[OTHER, ME], 2)),
    );
    rig.answer(answer, NOW + 5_001);
    let (committed, epoch) = rig.b.ha.replicas.sync_state_set();
    assert_eq!(
        (committed.clone(), epoch),
        ([OTHER as u64, ME as u64].into(), 2)
    );
    assert!(rig.b.ha.replicas.proposed_sync_state_set().is_none());
}

#[test]
fn a_refused_proposal_is_dropped() {
    let (mut rig, _) = Rig::registered(Some((ME, "127.0.0.1:10911", 1)), set(&[ME], 1));
    let slave = rig
        .b
        .ha_slave_connected("10.0.0.5:40000".parse().unwrap(), NOW);
    rig.b.ha.replicas.set_slave_broker_id(slave, OTHER as u64);
    rig.b.ha_slave_report(slave, 0, NOW);
    let t = rig.step(NOW + 5_000);
    let (_, alter) = one(&t, RequestCode::ControllerAlterSyncStateSet);
    let refusal = RemotingCommand::response_to(
        &alter,
        ResponseCode::ControllerFencedMasterEpoch.value(),
        Some("fenced".into()),
    );
    rig.answer(refusal, NOW + 5_001);
    assert!(rig.b.ha.replicas.proposed_sync_state_set().is_none());
    let (committed, epoch) = rig.b.ha.replicas.sync_state_set();
    assert_eq!((committed.clone(), epoch), ([ME as u64].into(), 1));
}

#[test]
fn an_unanswered_proposal_stays_counted_until_the_controller_says_otherwise() {
    let (mut rig, _) = Rig::registered(Some((ME, "127.0.0.1:10911", 1)), set(&[ME], 1));
    let slave = rig
        .b
        .ha_slave_connected("10.0.0.5:40000".parse().unwrap(), NOW);
    rig.b.ha.replicas.set_slave_broker_id(slave, OTHER as u64);
    rig.b.ha_slave_report(slave, 0, NOW);
    let t = rig.step(NOW + 5_000);
    one(&t, RequestCode::ControllerAlterSyncStateSet);
    rig.step(NOW + 5_000 + REQUEST_TIMEOUT_MS);
    assert!(
        rig.b.ha.replicas.proposed_sync_state_set().is_some(),
        "the controller may have committed it"
    );
}

#[test]
fn ha_addresses_are_the_broker_port_plus_one() {
    assert_eq!(
        ha_addr_of("10.0.0.5:10911").as_deref(),
        Some("10.0.0.5:10912")
    );
    assert_eq!(ha_addr_of("host:65535"), None);
    assert_eq!(ha_addr_of("no-port"), None);
}

#[test]
fn named_master_of_an_epoch_it_already_led_it_asks_for_a_new_election_instead_of_resuming() {
    let (mut rig, t) = Rig::registered(None, set(&[], 0));
    // The epoch file says this broker led epoch 4 before (a restart since).
    rig.b.store.append_epoch(4, 0).unwrap();
    let (_, elect) = one(&t, RequestCode::ControllerElectMaster);
    let t = rig.answer(elected_me(&elect, 4, 4), NOW);
    assert_ne!(
        rig.b.broker_role(),
        BrokerRole::SyncMaster,
        "resumed epoch 4"
    );
    assert_eq!(rig.send(NOW), ResponseCode::ServiceNotAvailable.value());
    // It gave the place up; the controller's next answer (a new epoch) is taken.
    let (_, again) = one(&t, RequestCode::ControllerElectMaster);
    rig.answer(elected_me(&again, 5, 5), NOW);
    assert_eq!(rig.master(), Some((5, ME)));
    assert_eq!(rig.b.broker_role(), BrokerRole::SyncMaster);
}

#[test]
fn a_master_that_hears_nothing_from_the_controller_for_a_heartbeat_timeout_steps_down() {
    let (mut rig, t) = Rig::registered(None, set(&[], 0));
    let (_, elect) = one(&t, RequestCode::ControllerElectMaster);
    let answer = elected_me(&elect, 1, 1);
    rig.answer(answer, NOW);
    assert_eq!(rig.b.broker_role(), BrokerRole::SyncMaster);
    // The controller goes silent: polls go unanswered.
    let mut registered_as = None;
    for s in 1..=12 {
        let t = rig.step(NOW + s * 1_000);
        registered_as = registered_id(&t).or(registered_as);
    }
    assert_eq!(rig.b.broker_role(), BrokerRole::Slave, "stepped down");
    assert_eq!(rig.master(), None);
    assert_eq!(registered_as, Some(ME), "no longer the route's master id");
    assert_eq!(
        rig.send(NOW + 12_000),
        ResponseCode::ServiceNotAvailable.value()
    );
}
