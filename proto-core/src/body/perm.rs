//! Topic and queue permission bits (Java `PermName`, protocol reference §17.5), as carried in
//! `QueueData.perm` and `TopicConfig.perm`.
//!
//! What it leaves out: the name server's and broker's use of them (ANDing the broker
//! permission, wiping WRITE), which belongs to their state machines.

/// The permission bits and their tests. A unit type so the Java names read the same here:
/// `PermName::PERM_READ`, `PermName::is_readable(perm)`.
#[derive(Clone, Copy, Debug)]
pub struct PermName;

impl PermName {
    /// Bit 3: the topic is a priority topic.
    pub const PERM_PRIORITY: i32 = 1 << 3;
    /// Bit 2: consumers may read.
    pub const PERM_READ: i32 = 1 << 2;
    /// Bit 1: producers may write.
    pub const PERM_WRITE: i32 = 1 << 1;
    /// Bit 0: a template topic that auto-created topics inherit from (`TBW102`).
    pub const PERM_INHERIT: i32 = 1;

    pub fn is_readable(perm: i32) -> bool {
        perm & PermName::PERM_READ == PermName::PERM_READ
    }

    pub fn is_writeable(perm: i32) -> bool {
        perm & PermName::PERM_WRITE == PermName::PERM_WRITE
    }

    pub fn is_inherited(perm: i32) -> bool {
        perm & PermName::PERM_INHERIT == PermName::PERM_INHERIT
    }

    pub fn is_priority(perm: i32) -> bool {
        perm & PermName::PERM_PRIORITY == PermName::PERM_PRIORITY
    }

    /// Java's `perm2String`: `R`, `W`, `X` (inherit) or `-` per position.
    pub fn to_text(perm: i32) -> String {
        let flag = |set: bool, c: char| if set { c } else { '-' };
        [
            flag(PermName::is_readable(perm), 'R'),
            flag(PermName::is_writeable(perm), 'W'),
            flag(PermName::is_inherited(perm), 'X'),
        ]
        .into_iter()
        .collect()
    }
}

const _: () = assert!(PermName::PERM_PRIORITY == 8);
const _: () = assert!(PermName::PERM_READ | PermName::PERM_WRITE == 6);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bits_match_java() {
        assert!(PermName::is_readable(6));
        assert!(PermName::is_writeable(6));
        assert!(!PermName::is_inherited(6));
        assert!(PermName::is_inherited(7));
        assert!(!PermName::is_writeable(4));
        assert!(!PermName::is_readable(2));
        assert!(PermName::is_priority(8));
        assert!(!PermName::is_priority(7));
        assert_eq!(PermName::to_text(7), "RWX");
        assert_eq!(PermName::to_text(4), "R--");
        assert_eq!(PermName::to_text(0), "---");
    }
}
