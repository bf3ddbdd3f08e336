//! Makes one side of a veth a VLAN-tagged port for the simulated home:
//! pushes an 802.1Q tag on frames leaving an interface and pops it from
//! frames arriving. This machine's kernel has neither the 8021q module nor
//! bridge VLAN filtering nor act_vlan, but it has the BPF helpers
//! `bpf_skb_vlan_push`/`bpf_skb_vlan_pop`, so this loads two five-
//! instruction TC programs through TCX links and holds them until killed.
//!
//! Usage (inside a namespace): `iot-lab-vlan IFACE VID`

use std::io;

const BPF_PROG_LOAD: i64 = 5;
const BPF_LINK_CREATE: i64 = 28;
const BPF_PROG_TYPE_SCHED_CLS: u32 = 3;
const BPF_TCX_INGRESS: u32 = 46;
const BPF_TCX_EGRESS: u32 = 47;
const FUNC_SKB_VLAN_PUSH: i32 = 18;
const FUNC_SKB_VLAN_POP: i32 = 19;
/// TCX_NEXT: hand the frame to the next program, unchanged otherwise.
const TCX_NEXT: i32 = -1;

#[repr(C)]
#[derive(Clone, Copy)]
struct Insn {
    code: u8,
    regs: u8,
    off: i16,
    imm: i32,
}

const fn insn(code: u8, dst: u8, src: u8, imm: i32) -> Insn {
    Insn {
        code,
        regs: (src << 4) | dst,
        off: 0,
        imm,
    }
}
const MOV64_IMM: u8 = 0xb7;
const CALL: u8 = 0x85;
const EXIT: u8 = 0x95;

#[repr(C)]
#[derive(Default)]
struct ProgLoad {
    prog_type: u32,
    insn_cnt: u32,
    insns: u64,
    license: u64,
    log_level: u32,
    log_size: u32,
    log_buf: u64,
    kern_version: u32,
    prog_flags: u32,
    prog_name: [u8; 16],
    prog_ifindex: u32,
    expected_attach_type: u32,
}

#[repr(C)]
#[derive(Default)]
struct LinkCreate {
    prog_fd: u32,
    target_ifindex: u32,
    attach_type: u32,
    flags: u32,
    relative: u32,
    _pad: u32,
    expected_revision: u64,
}

fn bpf<T>(cmd: i64, attr: &mut T) -> io::Result<i32> {
    // SAFETY: attr is a valid bpf_attr prefix of the size passed.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            cmd,
            attr as *mut T as *mut libc::c_void,
            std::mem::size_of::<T>() as u32,
        )
    };
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(rc as i32)
    }
}

fn load(insns: &[Insn]) -> io::Result<i32> {
    let license = c"GPL";
    let mut attr = ProgLoad {
        prog_type: BPF_PROG_TYPE_SCHED_CLS,
        insn_cnt: insns.len() as u32,
        insns: insns.as_ptr() as u64,
        license: license.as_ptr() as u64,
        ..Default::default()
    };
    bpf(BPF_PROG_LOAD, &mut attr)
}

fn attach(prog: i32, ifindex: u32, attach_type: u32) -> io::Result<i32> {
    let mut attr = LinkCreate {
        prog_fd: prog as u32,
        target_ifindex: ifindex,
        attach_type,
        ..Default::default()
    };
    bpf(BPF_LINK_CREATE, &mut attr)
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() != 3 {
        eprintln!("usage: iot-lab-vlan IFACE VID");
        std::process::exit(2);
    }
    let vid: i32 = args[2].parse().expect("VID is a number");
    let ifname = std::ffi::CString::new(args[1].as_str()).unwrap();
    // SAFETY: valid C string.
    let ifindex = unsafe { libc::if_nametoindex(ifname.as_ptr()) };
    if ifindex == 0 {
        eprintln!("no interface {}", args[1]);
        std::process::exit(1);
    }
    // r1 = skb already; r2 = htons(ETH_P_8021Q) as the helper's __be16; r3 = vid.
    let push = [
        insn(
            MOV64_IMM,
            2,
            0,
            u16::from_ne_bytes(0x8100u16.to_be_bytes()) as i32,
        ),
        insn(MOV64_IMM, 3, 0, vid),
        insn(CALL, 0, 0, FUNC_SKB_VLAN_PUSH),
        insn(MOV64_IMM, 0, 0, TCX_NEXT),
        insn(EXIT, 0, 0, 0),
    ];
    let pop = [
        insn(CALL, 0, 0, FUNC_SKB_VLAN_POP),
        insn(MOV64_IMM, 0, 0, TCX_NEXT),
        insn(EXIT, 0, 0, 0),
    ];
    let run = || -> io::Result<()> {
        let p = load(&push)?;
        let q = load(&pop)?;
        attach(p, ifindex, BPF_TCX_EGRESS)?;
        attach(q, ifindex, BPF_TCX_INGRESS)?;
        Ok(())
    };
    if let Err(e) = run() {
        eprintln!("iot-lab-vlan: {e}");
        std::process::exit(1);
    }
    println!("ready");
    // Hold the links (they go when this process does); bounded to a day.
    for _ in 0..86_400 {
        std::thread::sleep(std::time::Duration::from_secs(1));
    }
}
