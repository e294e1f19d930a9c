//! Device rules for cgroup v2: the `BPF_PROG_TYPE_CGROUP_DEVICE` program equivalent to the v1
//! devices-cgroup rules moat writes. Pure: rules in, instructions out; the syscalls that load
//! and attach the program are in [`super::bpf`].
//!
//! Rules follow the v1 kernel semantics (security/device_cgroup.c), so the same list gives the
//! same answers on both hierarchies: the list starts as "deny everything" (moat's default), an
//! `a` rule resets it to allow-all or deny-all and forgets every exception, and any other rule
//! adds an exception when it goes against the current default or removes (the given access
//! bits of) an identical exception when it agrees with it. A request is allowed under a
//! deny-all default when one exception covers its type, numbers and every access bit asked
//! for; under an allow-all default when no exception overlaps it. [`DeviceRules::allows`] is
//! that reference; [`DeviceRules::program`] compiles it and the tests run both side by side.
//!
//! The program is hand-written eBPF: the loaders that exist for Rust (`aya`, `libbpf-rs`/
//! `libbpf-sys`) load ELF objects that clang or bpf-linker compiled, which this build does not
//! have, and the program is a few compares per rule (runc's `devicefilter` does the same in Go).
//!
//! Program layout, with the context `struct bpf_cgroup_dev_ctx { u32 access_type; u32 major;
//! u32 minor; }` in r1:
//! ```text
//!   r2 = access_type & 0xffff   (BPF_DEVCG_DEV_BLOCK 1, BPF_DEVCG_DEV_CHAR 2)
//!   r3 = access_type >> 16      (BPF_DEVCG_ACC_MKNOD 1, READ 2, WRITE 4)
//!   r4 = major; r5 = minor
//!   per exception: if type, access, major, minor match -> return verdict
//!   return default
//! ```

use oci_spec::runtime::{LinuxDeviceCgroup, LinuxDeviceType};

/// Major number of Unix98 pty slaves (/dev/pts/N).
pub(crate) const PTS_MAJOR: u32 = 136;

/// Access bits as the kernel passes them (`BPF_DEVCG_ACC_*`, same values as v1's m, r, w).
pub const ACC_MKNOD: u8 = 1;
pub const ACC_READ: u8 = 2;
pub const ACC_WRITE: u8 = 4;
const ACC_ALL: u8 = ACC_MKNOD | ACC_READ | ACC_WRITE;

/// A device type as a rule or the kernel names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DevType {
    Block,
    Char,
}

impl DevType {
    /// `BPF_DEVCG_DEV_BLOCK` / `BPF_DEVCG_DEV_CHAR`.
    fn bits(self) -> i32 {
        match self {
            DevType::Block => 1,
            DevType::Char => 2,
        }
    }
}

/// One v1-style rule: `allow`/`deny` `type major:minor access`. `typ` None is `a` (all devices;
/// the numbers are then ignored, as by the kernel); None numbers are `*`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rule {
    pub allow: bool,
    pub typ: Option<DevType>,
    pub major: Option<u32>,
    pub minor: Option<u32>,
    /// `ACC_*` bits.
    pub access: u8,
}

impl Rule {
    /// The rule for an OCI `linux.resources.devices` entry. `p` (fifo) rules name no device and
    /// give `Ok(None)`; `u` (unbuffered character device) is a character device.
    pub fn from_oci(d: &LinuxDeviceCgroup) -> Result<Option<Rule>, String> {
        let typ = match d.typ().unwrap_or(LinuxDeviceType::A) {
            LinuxDeviceType::A => None,
            LinuxDeviceType::B => Some(DevType::Block),
            LinuxDeviceType::C | LinuxDeviceType::U => Some(DevType::Char),
            LinuxDeviceType::P => return Ok(None),
        };
        let number = |what: &str, v: Option<i64>| -> Result<Option<u32>, String> {
            match v {
                None => Ok(None),
                Some(n) if n < 0 => Ok(None),
                Some(n) => u32::try_from(n)
                    .map(Some)
                    .map_err(|_| format!("device rule {what} {n} is out of range")),
            }
        };
        let mut access = 0;
        for c in d.access().as_deref().unwrap_or("rwm").chars() {
            access |= match c {
                'm' => ACC_MKNOD,
                'r' => ACC_READ,
                'w' => ACC_WRITE,
                other => return Err(format!("device rule access {other:?} is not r, w or m")),
            };
        }
        if access == 0 {
            return Err("device rule access is empty".into());
        }
        Ok(Some(Rule {
            allow: d.allow(),
            typ,
            major: number("major", d.major())?,
            minor: number("minor", d.minor())?,
            access,
        }))
    }
}

/// An exception to the default: one type, numbers (None is `*`), access bits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Exception {
    typ: DevType,
    major: Option<u32>,
    minor: Option<u32>,
    access: u8,
}

impl Exception {
    fn same_device(&self, other: &Exception) -> bool {
        self.typ == other.typ && self.major == other.major && self.minor == other.minor
    }
    fn covers(&self, typ: DevType, major: u32, minor: u32) -> bool {
        self.typ == typ
            && self.major.is_none_or(|m| m == major)
            && self.minor.is_none_or(|m| m == minor)
    }
}

/// The state of a v1 devices cgroup after a list of rules: a default and its exceptions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceRules {
    default_allow: bool,
    exceptions: Vec<Exception>,
}

impl Default for DeviceRules {
    fn default() -> Self {
        DeviceRules::deny_all()
    }
}

impl DeviceRules {
    /// Nothing allowed.
    pub fn deny_all() -> DeviceRules {
        DeviceRules { default_allow: false, exceptions: Vec::new() }
    }

    /// What moat gives a container: deny all, then the spec's rules in order, then the nodes of
    /// the minimal /dev and the pty slaves (`resources::standard_device_rules_v1`), the same
    /// list, in the same order, as moat writes on v1.
    pub fn for_container(spec: &[LinuxDeviceCgroup]) -> Result<DeviceRules, String> {
        let mut rules = DeviceRules::deny_all();
        for d in spec {
            if let Some(rule) = Rule::from_oci(d)? {
                rules.apply(&rule);
            }
        }
        for (_, major, minor) in crate::policy::devices::STANDARD {
            rules.apply(&Rule {
                allow: true,
                typ: Some(DevType::Char),
                major: u32::try_from(major).ok(),
                minor: u32::try_from(minor).ok(),
                access: ACC_ALL,
            });
        }
        rules.apply(&Rule {
            allow: true,
            typ: Some(DevType::Char),
            major: Some(PTS_MAJOR),
            minor: None,
            access: ACC_ALL,
        });
        Ok(rules)
    }

    /// Applies one rule the way the v1 kernel applies a write to devices.allow/devices.deny.
    pub fn apply(&mut self, rule: &Rule) {
        let Some(typ) = rule.typ else {
            self.default_allow = rule.allow;
            self.exceptions.clear();
            return;
        };
        let ex = Exception { typ, major: rule.major, minor: rule.minor, access: rule.access };
        if rule.allow != self.default_allow {
            match self.exceptions.iter_mut().find(|e| e.same_device(&ex)) {
                Some(e) => e.access |= ex.access,
                None => self.exceptions.push(ex),
            }
        } else {
            for e in self.exceptions.iter_mut().filter(|e| e.same_device(&ex)) {
                e.access &= !ex.access;
            }
            self.exceptions.retain(|e| e.access != 0);
        }
    }

    /// The reference answer: may a process use `typ major:minor` with `access` (`ACC_*` bits)?
    pub fn allows(&self, typ: DevType, major: u32, minor: u32, access: u8) -> bool {
        let mut matching = self.exceptions.iter().filter(|e| e.covers(typ, major, minor));
        if self.default_allow {
            !matching.any(|e| e.access & access != 0)
        } else {
            matching.any(|e| access & !e.access == 0)
        }
    }

    /// The eBPF program giving the same answers as [`DeviceRules::allows`].
    pub fn program(&self) -> Vec<Insn> {
        use Reg::*;
        let mut p = vec![
            Insn::ldx_w(R2, R1, 0),
            Insn::alu32_k(AND, R2, 0xffff),
            Insn::ldx_w(R3, R1, 0),
            Insn::alu32_k(RSH, R3, 16),
            Insn::ldx_w(R4, R1, 4),
            Insn::ldx_w(R5, R1, 8),
        ];
        // Under a deny-all default the exceptions allow; under allow-all they deny.
        let verdict = i32::from(!self.default_allow);
        for e in &self.exceptions {
            // Each block: conditional jumps past its end (offset fixed below), then the verdict.
            let mut block = vec![Insn::jmp32_k(JNE, R2, e.typ.bits(), 0)];
            if self.default_allow {
                // Denied when the request asks for any bit of the exception's access.
                if e.access != ACC_ALL {
                    block.push(Insn::mov32_x(R1, R3));
                    block.push(Insn::alu32_k(AND, R1, i32::from(e.access)));
                    block.push(Insn::jmp32_k(JEQ, R1, 0, 0));
                }
            } else if e.access != ACC_ALL {
                // Allowed only when every bit asked for is in the exception's access.
                block.push(Insn::mov32_x(R1, R3));
                block.push(Insn::alu32_k(AND, R1, i32::from(!e.access & ACC_ALL)));
                block.push(Insn::jmp32_k(JNE, R1, 0, 0));
            }
            if let Some(major) = e.major {
                block.push(Insn::jmp32_k(JNE, R4, number(major), 0));
            }
            if let Some(minor) = e.minor {
                block.push(Insn::jmp32_k(JNE, R5, number(minor), 0));
            }
            block.push(Insn::mov32_k(R0, verdict));
            block.push(Insn::exit());
            let len = block.len();
            for (i, insn) in block.iter_mut().enumerate() {
                if insn.is_jump() {
                    // Relative to the next instruction: to the first one after the block.
                    insn.off = i16::try_from(len - i - 1).unwrap_or(i16::MAX);
                }
            }
            p.extend(block);
        }
        p.push(Insn::mov32_k(R0, i32::from(self.default_allow)));
        p.push(Insn::exit());
        p
    }
}

/// A device number as the 32-bit immediate of a JMP32 compare (same bits).
fn number(n: u32) -> i32 {
    i32::from_ne_bytes(n.to_ne_bytes())
}

/// The eBPF registers used here.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reg {
    R0 = 0,
    R1 = 1,
    R2 = 2,
    R3 = 3,
    R4 = 4,
    R5 = 5,
}

// Opcodes (include/uapi/linux/bpf_common.h, bpf.h).
const BPF_LDX: u8 = 0x01;
const BPF_ALU: u8 = 0x04;
const BPF_JMP: u8 = 0x05;
const BPF_JMP32: u8 = 0x06;
const BPF_W: u8 = 0x00;
const BPF_MEM: u8 = 0x60;
const BPF_K: u8 = 0x00;
const BPF_X: u8 = 0x08;
const BPF_MOV: u8 = 0xb0;
const BPF_EXIT: u8 = 0x90;
/// ALU and jump operations used here.
pub const AND: u8 = 0x50;
pub const RSH: u8 = 0x70;
pub const JEQ: u8 = 0x10;
pub const JNE: u8 = 0x50;

/// One `struct bpf_insn`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Insn {
    pub code: u8,
    pub dst: u8,
    pub src: u8,
    pub off: i16,
    pub imm: i32,
}

impl Insn {
    /// `dst = *(u32 *)(src + off)`
    pub fn ldx_w(dst: Reg, src: Reg, off: i16) -> Insn {
        Insn { code: BPF_LDX | BPF_MEM | BPF_W, dst: dst as u8, src: src as u8, off, imm: 0 }
    }
    /// 32-bit `dst op= imm`.
    pub fn alu32_k(op: u8, dst: Reg, imm: i32) -> Insn {
        Insn { code: BPF_ALU | op | BPF_K, dst: dst as u8, src: 0, off: 0, imm }
    }
    /// 32-bit `dst = imm`.
    pub fn mov32_k(dst: Reg, imm: i32) -> Insn {
        Insn::alu32_k(BPF_MOV, dst, imm)
    }
    /// 32-bit `dst = src`.
    pub fn mov32_x(dst: Reg, src: Reg) -> Insn {
        Insn { code: BPF_ALU | BPF_MOV | BPF_X, dst: dst as u8, src: src as u8, off: 0, imm: 0 }
    }
    /// `if (u32)dst op imm goto pc + 1 + off`.
    pub fn jmp32_k(op: u8, dst: Reg, imm: i32, off: i16) -> Insn {
        Insn { code: BPF_JMP32 | op | BPF_K, dst: dst as u8, src: 0, off, imm }
    }
    pub fn exit() -> Insn {
        Insn { code: BPF_JMP | BPF_EXIT, dst: 0, src: 0, off: 0, imm: 0 }
    }
    fn is_jump(&self) -> bool {
        self.code & 0x07 == BPF_JMP32
    }

    /// The kernel's 8-byte encoding (the register nibbles follow the bitfield order of the
    /// machine's byte order).
    pub fn to_bytes(self) -> [u8; 8] {
        let regs = if cfg!(target_endian = "little") {
            (self.src << 4) | (self.dst & 0x0f)
        } else {
            (self.dst << 4) | (self.src & 0x0f)
        };
        let off = self.off.to_ne_bytes();
        let imm = self.imm.to_ne_bytes();
        [self.code, regs, off[0], off[1], imm[0], imm[1], imm[2], imm[3]]
    }
}

/// The program's bytes, as `BPF_PROG_LOAD` takes them.
pub fn encode(program: &[Insn]) -> Vec<u8> {
    program.iter().flat_map(|i| i.to_bytes()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use oci_spec::runtime::LinuxDeviceCgroupBuilder;

    /// Runs the subset of eBPF that `program` emits on a device context.
    fn run(program: &[Insn], typ: DevType, access: u8, major: u32, minor: u32) -> u32 {
        let ctx = [(u32::from(access) << 16) | typ.bits() as u32, major, minor];
        let mut r = [0u64; 11];
        let mut pc = 0usize;
        let mut steps = 0;
        loop {
            steps += 1;
            assert!(steps < 10_000, "the program loops");
            let i = program.get(pc).copied().unwrap_or_else(|| panic!("pc {pc} out of program"));
            pc += 1;
            let (d, s) = (usize::from(i.dst), usize::from(i.src));
            let imm = i.imm as u32;
            match i.code {
                0x61 => {
                    assert_eq!(s, 1, "loads only from the context");
                    r[d] = u64::from(ctx[usize::try_from(i.off).expect("off") / 4]);
                }
                0x54 => r[d] = u64::from(r[d] as u32 & imm),
                0x74 => r[d] = u64::from((r[d] as u32) >> imm),
                0xb4 => r[d] = u64::from(imm),
                0xbc => r[d] = u64::from(r[s] as u32),
                0x56 | 0x16 => {
                    let equal = r[d] as u32 == imm;
                    if equal == (i.code == 0x16) {
                        pc = (pc as i64 + i64::from(i.off)) as usize;
                    }
                }
                0x95 => return r[0] as u32,
                other => panic!("opcode {other:#x} not expected"),
            }
        }
    }

    fn oci(
        allow: bool,
        typ: LinuxDeviceType,
        nums: Option<(i64, i64)>,
        access: &str,
    ) -> LinuxDeviceCgroup {
        let mut b = LinuxDeviceCgroupBuilder::default().allow(allow).typ(typ).access(access);
        if let Some((major, minor)) = nums {
            b = b.major(major).minor(minor);
        }
        b.build().expect("rule")
    }

    /// Compares the program with the reference on every type and access combination over a
    /// grid of numbers that includes every number the rules name.
    fn agree(rules: &DeviceRules) {
        let program = rules.program();
        let mut numbers: Vec<u32> = vec![0, 1, 2, 3, 5, 7, 8, 136, 254, 4095, 1 << 19];
        for e in &rules.exceptions {
            numbers.extend(e.major.iter().chain(&e.minor).copied());
        }
        for typ in [DevType::Block, DevType::Char] {
            for access in 1..=ACC_ALL {
                for &major in &numbers {
                    for &minor in &numbers {
                        let want = rules.allows(typ, major, minor, access);
                        let got = run(&program, typ, access, major, minor);
                        assert_eq!(
                            got,
                            u32::from(want),
                            "{typ:?} {major}:{minor} access {access} with {rules:?}"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn encoding_matches_the_kernel_layout() {
        // BPF_LDX_MEM(BPF_W, BPF_REG_2, BPF_REG_1, 4)
        assert_eq!(Insn::ldx_w(Reg::R2, Reg::R1, 4).to_bytes(), [0x61, 0x12, 4, 0, 0, 0, 0, 0]);
        // BPF_JMP32_IMM(BPF_JNE, BPF_REG_4, 254, 3)
        assert_eq!(
            Insn::jmp32_k(JNE, Reg::R4, 254, 3).to_bytes(),
            [0x56, 0x04, 3, 0, 254, 0, 0, 0]
        );
        assert_eq!(Insn::exit().to_bytes(), [0x95, 0, 0, 0, 0, 0, 0, 0]);
        assert_eq!(encode(&[Insn::exit(), Insn::exit()]).len(), 16);
    }

    #[test]
    fn a_container_gets_the_minimal_dev_and_nothing_else() {
        // CRI's spec: deny everything, list nothing.
        let rules = DeviceRules::for_container(&[oci(false, LinuxDeviceType::A, None, "rwm")])
            .expect("rules");
        for (major, minor) in
            [(1, 3), (1, 5), (1, 7), (1, 8), (1, 9), (5, 0), (5, 2), (136, 0), (136, 7)]
        {
            assert!(rules.allows(DevType::Char, major, minor, ACC_ALL), "c {major}:{minor}");
            assert!(!rules.allows(DevType::Block, major, minor, ACC_READ), "b {major}:{minor}");
        }
        for (major, minor) in [(1, 1), (1, 2), (1, 11), (4, 0), (10, 200), (254, 0)] {
            assert!(!rules.allows(DevType::Char, major, minor, ACC_READ), "c {major}:{minor}");
        }
        assert!(!rules.allows(DevType::Block, 8, 0, ACC_READ));
        assert!(!rules.allows(DevType::Block, 254, 0, ACC_MKNOD));
        agree(&rules);
        // No spec rules at all: still deny-all plus the minimal /dev.
        assert_eq!(DeviceRules::for_container(&[]).expect("rules"), rules);
    }

    #[test]
    fn passed_through_devices_are_allowed_with_their_access_only() {
        let rules = DeviceRules::for_container(&[
            oci(false, LinuxDeviceType::A, None, "rwm"),
            oci(true, LinuxDeviceType::C, Some((10, 200)), "rw"),
            oci(true, LinuxDeviceType::B, Some((8, -1)), "r"),
        ])
        .expect("rules");
        assert!(rules.allows(DevType::Char, 10, 200, ACC_READ | ACC_WRITE));
        assert!(!rules.allows(DevType::Char, 10, 200, ACC_MKNOD));
        assert!(rules.allows(DevType::Block, 8, 16, ACC_READ));
        assert!(!rules.allows(DevType::Block, 8, 16, ACC_READ | ACC_WRITE));
        assert!(!rules.allows(DevType::Char, 8, 16, ACC_READ));
        agree(&rules);
    }

    #[test]
    fn rules_follow_the_v1_kernel_semantics() {
        // allow-all, then deny exceptions; a later allow takes access bits back out.
        let rules = DeviceRules::for_container(&[
            oci(true, LinuxDeviceType::A, None, "rwm"),
            oci(false, LinuxDeviceType::B, None, "rwm"),
            oci(false, LinuxDeviceType::C, Some((1, 1)), "rw"),
            oci(true, LinuxDeviceType::C, Some((1, 1)), "r"),
        ])
        .expect("rules");
        assert!(!rules.allows(DevType::Block, 254, 0, ACC_READ));
        assert!(rules.allows(DevType::Char, 1, 1, ACC_READ));
        assert!(!rules.allows(DevType::Char, 1, 1, ACC_READ | ACC_WRITE));
        assert!(rules.allows(DevType::Char, 4, 1, ACC_ALL));
        // The standard nodes are no exception under allow-all (they agree with the default).
        assert!(rules.allows(DevType::Char, 1, 3, ACC_ALL));
        agree(&rules);
        // A deny of a standard node before the standard list: the list adds it back (as on v1).
        let rules = DeviceRules::for_container(&[
            oci(false, LinuxDeviceType::A, None, "rwm"),
            oci(true, LinuxDeviceType::C, Some((1, 3)), "rwm"),
            oci(false, LinuxDeviceType::C, Some((1, 3)), "w"),
        ])
        .expect("rules");
        assert!(rules.allows(DevType::Char, 1, 3, ACC_WRITE));
        agree(&rules);
        // Only the raw rules: deny wins after it.
        let mut raw = DeviceRules::deny_all();
        raw.apply(
            &Rule::from_oci(&oci(true, LinuxDeviceType::C, Some((1, 5)), "rwm"))
                .expect("r")
                .expect("r"),
        );
        raw.apply(
            &Rule::from_oci(&oci(false, LinuxDeviceType::C, Some((1, 5)), "m"))
                .expect("r")
                .expect("r"),
        );
        assert!(raw.allows(DevType::Char, 1, 5, ACC_READ | ACC_WRITE));
        assert!(!raw.allows(DevType::Char, 1, 5, ACC_MKNOD));
        assert!(!raw.allows(DevType::Char, 1, 3, ACC_READ));
        agree(&raw);
        agree(&DeviceRules::deny_all());
    }

    #[test]
    fn bad_rules_are_refused_and_fifos_ignored() {
        assert!(Rule::from_oci(&oci(true, LinuxDeviceType::C, Some((1, 3)), "rx")).is_err());
        assert!(Rule::from_oci(&oci(true, LinuxDeviceType::C, Some((1 << 40, 3)), "r")).is_err());
        assert_eq!(Rule::from_oci(&oci(true, LinuxDeviceType::P, None, "r")), Ok(None));
        let u = Rule::from_oci(&oci(true, LinuxDeviceType::U, Some((4, -1)), "rw")).expect("u");
        assert_eq!(
            u.map(|r| (r.typ, r.major, r.minor)),
            Some((Some(DevType::Char), Some(4), None))
        );
    }
}
