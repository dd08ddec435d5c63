//! Request and response codes with RocketMQ's numbers (`RequestCode.java`,
//! `ResponseCode.java`). A code we do not know is preserved as `Unknown(n)`, never rejected: the
//! broker answers it with REQUEST_CODE_NOT_SUPPORTED and the connection lives on.

/// Declares a code enum with an `Unknown(i32)` catch-all and lossless `i32` conversions.
macro_rules! codes {
    ($(#[$meta:meta])* $name:ident { $($variant:ident = $value:expr,)* }) => {
        $(#[$meta])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        pub enum $name {
            $($variant,)*
            Unknown(i32),
        }

        impl $name {
            pub fn value(self) -> i32 {
                match self {
                    $($name::$variant => $value,)*
                    $name::Unknown(n) => n,
                }
            }

            /// Maps a wire number to its code. A number that names a known code never becomes
            /// `Unknown`, so `from(value(c)) == c` for every code built by this function.
            pub fn from_value(n: i32) -> $name {
                match n {
                    $($value => $name::$variant,)*
                    other => $name::Unknown(other),
                }
            }
        }

        impl From<i32> for $name {
            fn from(n: i32) -> $name {
                $name::from_value(n)
            }
        }

        impl From<$name> for i32 {
            fn from(c: $name) -> i32 {
                c.value()
            }
        }
    };
}

codes! {
    /// What a request asks for.
    RequestCode {
        SendMessage = 10,
        PullMessage = 11,
        QueryMessage = 12,
        QueryBrokerOffset = 13,
        QueryConsumerOffset = 14,
        UpdateConsumerOffset = 15,
        UpdateAndCreateTopic = 17,
        UpdateAndCreateTopicList = 18,
        GetAllTopicConfig = 21,
        GetTopicConfigList = 22,
        GetTopicNameList = 23,
        UpdateBrokerConfig = 25,
        GetBrokerConfig = 26,
        TriggerDeleteFiles = 27,
        GetBrokerRuntimeInfo = 28,
        SearchOffsetByTimestamp = 29,
        GetMaxOffset = 30,
        GetMinOffset = 31,
        GetEarliestMsgStoretime = 32,
        ViewMessageById = 33,
        HeartBeat = 34,
        UnregisterClient = 35,
        ConsumerSendMsgBack = 36,
        EndTransaction = 37,
        GetConsumerListByGroup = 38,
        CheckTransactionState = 39,
        NotifyConsumerIdsChanged = 40,
        LockBatchMq = 41,
        UnlockBatchMq = 42,
        GetAllConsumerOffset = 43,
        GetAllDelayOffset = 45,
        CheckClientConfig = 46,
        GetClientConfig = 47,
        GetTimerCheckPoint = 60,
        GetTimerMetrics = 61,
        PutKvConfig = 100,
        GetKvConfig = 101,
        DeleteKvConfig = 102,
        RegisterBroker = 103,
        UnregisterBroker = 104,
        GetRouteinfoByTopic = 105,
        GetBrokerClusterInfo = 106,
        UpdateAndCreateSubscriptionGroup = 200,
        GetAllSubscriptionGroupConfig = 201,
        GetTopicStatsInfo = 202,
        GetConsumerConnectionList = 203,
        GetProducerConnectionList = 204,
        WipeWritePermOfBroker = 205,
        GetAllTopicListFromNameserver = 206,
        DeleteSubscriptionGroup = 207,
        GetConsumeStats = 208,
        SuspendConsumer = 209,
        ResumeConsumer = 210,
        ResetConsumerOffsetInConsumer = 211,
        ResetConsumerOffsetInBroker = 212,
        AdjustConsumerThreadPool = 213,
        WhoConsumeTheMessage = 214,
        DeleteTopicInBroker = 215,
        DeleteTopicInNamesrv = 216,
        RegisterTopicInNamesrv = 217,
        GetKvlistByNamespace = 219,
        ResetConsumerClientOffset = 220,
        GetConsumerStatusFromClient = 221,
        InvokeBrokerToResetOffset = 222,
        InvokeBrokerToGetConsumerStatus = 223,
        GetTopicsByCluster = 224,
        UpdateAndCreateSubscriptionGroupList = 225,
        QueryTopicConsumeByWho = 300,
        QueryConsumeTimeSpan = 303,
        GetSystemTopicListFromNs = 304,
        GetSystemTopicListFromBroker = 305,
        CleanExpiredConsumequeue = 306,
        GetConsumerRunningInfo = 307,
        QueryCorrectionOffset = 308,
        ConsumeMessageDirectly = 309,
        SendMessageV2 = 310,
        GetUnitTopicList = 311,
        GetHasUnitSubTopicList = 312,
        GetHasUnitSubUnunitTopicList = 313,
        CloneGroupOffset = 314,
        ViewBrokerStatsData = 315,
        CleanUnusedTopic = 316,
        GetBrokerConsumeStats = 317,
        UpdateNamesrvConfig = 318,
        GetNamesrvConfig = 319,
        SendBatchMessage = 320,
        QueryConsumeQueue = 321,
        QueryDataVersion = 322,
        ResumeCheckHalfMessage = 323,
        SendReplyMessage = 324,
        SendReplyMessageV2 = 325,
        PushReplyMessageToClient = 326,
        AddWritePermOfBroker = 327,
        GetAllProducerInfo = 328,
        DeleteExpiredCommitlog = 329,
        QueryTopicsByConsumer = 343,
        QuerySubscriptionByConsumer = 345,
        GetTopicConfig = 351,
        GetSubscriptionGroupConfig = 352,
        UpdateAndGetGroupForbidden = 353,
        LitePullMessage = 361,
        RecallMessage = 370,
        QueryAssignment = 400,
        SetMessageRequestMode = 401,
        GetAllMessageRequestMode = 402,
        UpdateAndCreateStaticTopic = 513,
        GetBrokerMemberGroup = 901,
        AddBroker = 902,
        RemoveBroker = 903,
        BrokerHeartbeat = 904,
        NotifyMinBrokerIdChange = 905,
        ExchangeBrokerHaInfo = 906,
        GetBrokerHaStatus = 907,
        ResetMasterFlushOffset = 908,
        ControllerAlterSyncStateSet = 1001,
        ControllerElectMaster = 1002,
        ControllerRegisterBroker = 1003,
        ControllerGetReplicaInfo = 1004,
        ControllerGetMetadataInfo = 1005,
        ControllerGetSyncStateData = 1006,
        GetBrokerEpochCache = 1007,
        NotifyBrokerRoleChanged = 1008,
        UpdateControllerConfig = 1009,
        GetControllerConfig = 1010,
        CleanBrokerData = 1011,
        ControllerGetNextBrokerId = 1012,
        ControllerApplyBrokerId = 1013,
        PopMessage = 200050,
        AckMessage = 200051,
        PeekMessage = 200052,
        ChangeMessageInvisibletime = 200053,
        Notification = 200054,
        PollingInfo = 200055,
        PopRollback = 200056,
        BatchAckMessage = 200151,
    }
}

codes! {
    /// The outcome a response reports.
    ResponseCode {
        Success = 0,
        SystemError = 1,
        SystemBusy = 2,
        RequestCodeNotSupported = 3,
        TransactionFailed = 4,
        FlushDiskTimeout = 10,
        SlaveNotAvailable = 11,
        FlushSlaveTimeout = 12,
        MessageIllegal = 13,
        ServiceNotAvailable = 14,
        VersionNotSupported = 15,
        NoPermission = 16,
        TopicNotExist = 17,
        TopicExistAlready = 18,
        PullNotFound = 19,
        PullRetryImmediately = 20,
        PullOffsetMoved = 21,
        QueryNotFound = 22,
        SubscriptionParseFailed = 23,
        SubscriptionNotExist = 24,
        SubscriptionNotLatest = 25,
        SubscriptionGroupNotExist = 26,
        FilterDataNotExist = 27,
        FilterDataNotLatest = 28,
        InvalidParameter = 29,
        TransactionShouldCommit = 200,
        TransactionShouldRollback = 201,
        TransactionStateUnknow = 202,
        TransactionStateGroupWrong = 203,
        NoBuyerId = 204,
        NotInCurrentUnit = 205,
        ConsumerNotOnline = 206,
        ConsumeMsgTimeout = 207,
        NoMessage = 208,
        PollingFull = 209,
        PollingTimeout = 210,
        BrokerNotExist = 211,
        BrokerDispatchNotComplete = 212,
        BroadcastConsumption = 213,
        FlowControl = 215,
        NotLeaderForQueue = 501,
        IllegalOperation = 604,
        GoAway = 1500,
        ControllerFencedMasterEpoch = 2000,
        ControllerFencedSyncStateSetEpoch = 2001,
        ControllerInvalidMaster = 2002,
        ControllerInvalidReplicas = 2003,
        ControllerMasterNotAvailable = 2004,
        ControllerInvalidRequest = 2005,
        ControllerBrokerNotAlive = 2006,
        ControllerNotLeader = 2007,
        ControllerBrokerMetadataNotExist = 2008,
        ControllerInvalidCleanBrokerMetadata = 2009,
        ControllerBrokerNeedToBeRegistered = 2010,
        ControllerMasterStillExist = 2011,
        ControllerElectMasterFailed = 2012,
        ControllerAlterSyncStateSetFailed = 2013,
        ControllerBrokerIdInvalid = 2014,
        ControllerJraftInternalError = 2015,
        ControllerBrokerLiveInfoNotExist = 2016,
        UserNotExist = 3001,
        PolicyNotExist = 3002,
    }
}

impl RequestCode {
    /// Sends whose header uses the one-letter keys of `SendMessageRequestHeaderV2`.
    pub fn uses_send_header_v2(self) -> bool {
        matches!(
            self,
            RequestCode::SendMessageV2
                | RequestCode::SendBatchMessage
                | RequestCode::SendReplyMessageV2
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn every_number_round_trips(n in any::<i32>()) {
            prop_assert_eq!(RequestCode::from_value(n).value(), n);
            prop_assert_eq!(ResponseCode::from_value(n).value(), n);
        }
    }

    #[test]
    fn known_numbers_are_rocketmq_s() {
        assert_eq!(RequestCode::from(10), RequestCode::SendMessage);
        assert_eq!(RequestCode::from(310), RequestCode::SendMessageV2);
        assert_eq!(RequestCode::from(200050), RequestCode::PopMessage);
        assert_eq!(RequestCode::from(99999), RequestCode::Unknown(99999));
        assert_eq!(ResponseCode::from(17), ResponseCode::TopicNotExist);
        assert_eq!(ResponseCode::from(1500), ResponseCode::GoAway);
    }
}
