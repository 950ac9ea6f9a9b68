//! qemu guests, found by command line.
//!
//! sysinfo's process name is the kernel's 15-character `comm` and its `exe()`
//! needs ptrace rights that an unprivileged agent lacks, so guests are found
//! and sized from `/proc/PID/cmdline` alone: [`parse_guest`] is a pure
//! function of the arguments libvirt passed to qemu.

use novamedic_proto::v1;

use super::process::{process_age_seconds, ProcessTable};

const MIB: u64 = 1024 * 1024;

/// Lists the qemu guests in `table`, with totals.
pub fn collect(table: &ProcessTable) -> v1::Guests {
    let guests: Vec<v1::Guest> = table
        .entries()
        .iter()
        .filter_map(|entry| parse_guest(entry.pid, &entry.argv))
        .map(|mut guest| {
            guest.process_age_seconds = process_age_seconds(guest.pid).unwrap_or(0);
            guest
        })
        .collect();
    v1::Guests {
        count: guests.len() as u32,
        incoming_migrations: guests
            .iter()
            .filter(|guest| guest.incoming_migration)
            .count() as u32,
        vcpus: guests.iter().map(|guest| guest.vcpus).sum(),
        memory_bytes: guests.iter().map(|guest| guest.memory_bytes).sum(),
        guests,
    }
}

/// Returns true when `argv` runs qemu: argv[0]'s file name starts with `qemu-system-`
/// or `qemu-kvm` (RHEL's `/usr/libexec/qemu-kvm`).
pub fn is_qemu(argv: &[String]) -> bool {
    let Some(program) = argv.first() else {
        return false;
    };
    let name = program.rsplit('/').next().unwrap_or(program);
    name.starts_with("qemu-system-") || name.starts_with("qemu-kvm")
}

/// Reads a guest from qemu's arguments; `None` when `argv` is not qemu.
///
/// Name, UUID and vCPUs that are absent give "", "" and 1 (qemu's default of
/// one vCPU). Memory is `-m`; without `-m` it is the sum of the
/// `memory-backend-*` objects' sizes. With `-m`, the backends are ignored:
/// libvirt 8+ backs the `-m` RAM with one (`pc.ram`) of the same size, and
/// others back DIMMs that are not part of the boot RAM. Memory is 0 when
/// neither is present.
pub fn parse_guest(pid: u32, argv: &[String]) -> Option<v1::Guest> {
    if !is_qemu(argv) {
        return None;
    }
    let mut guest = v1::Guest {
        pid,
        vcpus: 1,
        ..Default::default()
    };
    let mut memory_bytes = None;
    let mut backend_bytes = 0;

    for (option, value) in option_pairs(&argv[1..]) {
        match option {
            "name" => guest.name = parse_name(value),
            "uuid" => guest.uuid = value.to_string(),
            "smp" => guest.vcpus = parse_smp(value).unwrap_or(guest.vcpus),
            "m" => memory_bytes = parse_memory(value).or(memory_bytes),
            "object" => backend_bytes += memory_backend_size(value).unwrap_or(0),
            _ => {}
        }
    }
    guest.memory_bytes = memory_bytes.unwrap_or(backend_bytes);
    // libvirt starts the destination qemu of a live migration with
    // `-incoming defer` (or a URI); the option stays on the command line
    // after the migration ends, until the guest's qemu next restarts.
    guest.incoming_migration = argv[1..]
        .iter()
        .any(|arg| arg == "-incoming" || arg == "--incoming");
    Some(guest)
}

/// Pairs each `-option` (or `--option`) with the argument after it. Flags
/// without a value pair with the next option, which is harmless because only
/// options that always take a value are read.
fn option_pairs(args: &[String]) -> impl Iterator<Item = (&str, &str)> {
    args.windows(2).filter_map(|pair| {
        let option = pair[0]
            .strip_prefix("--")
            .or_else(|| pair[0].strip_prefix('-'))?;
        Some((option, pair[1].as_str()))
    })
}

/// Splits a QemuOpts string (`guest=x,debug-threads=on`) into its parts.
/// A doubled comma is a literal comma.
fn split_opts(value: &str) -> Vec<String> {
    let mut parts = vec![String::new()];
    let mut chars = value.chars().peekable();
    while let Some(c) = chars.next() {
        if c != ',' {
            parts.last_mut().unwrap().push(c);
        } else if chars.peek() == Some(&',') {
            chars.next();
            parts.last_mut().unwrap().push(',');
        } else {
            parts.push(String::new());
        }
    }
    parts
}

/// Returns the value of `key` in a QemuOpts string. The first part may omit
/// its key (`-smp 4,sockets=4` means `cpus=4`): `implied_key` names it.
fn opt_value(value: &str, key: &str, implied_key: &str) -> Option<String> {
    split_opts(value)
        .into_iter()
        .enumerate()
        .find_map(|(index, part)| match part.split_once('=') {
            Some((k, v)) if k == key => Some(v.to_string()),
            None if index == 0 && key == implied_key => Some(part),
            _ => None,
        })
}

/// `-name guest=instance-0000002a,debug-threads=on` or the older
/// `-name instance-0000002a`.
fn parse_name(value: &str) -> String {
    opt_value(value, "guest", "guest").unwrap_or_default()
}

/// vCPUs at start from `-smp`: `cpus` (also the leading bare number) when
/// given, else the product of the topology parameters given.
///
/// NOTE: `maxcpus` alone is ignored and gives `None` (the caller's default of
/// one), because it is the hot-plug limit, not the vCPUs running. QEMU 6.2+
/// starts `maxcpus` vCPUs for `-smp maxcpus=N`; libvirt never writes that form.
fn parse_smp(value: &str) -> Option<u32> {
    if let Some(cpus) = opt_value(value, "cpus", "cpus") {
        return cpus.parse().ok();
    }
    let topology = ["sockets", "dies", "clusters", "cores", "threads"];
    let counts: Vec<u32> = topology
        .iter()
        .filter_map(|key| opt_value(value, key, "cpus")?.parse().ok())
        .collect();
    if counts.is_empty() {
        return None;
    }
    counts
        .iter()
        .try_fold(1u32, |product, count| product.checked_mul(*count))
}

/// Guest RAM from `-m`: `512` (MiB), `4096M`, `2G`, `size=2097152k`,
/// `size=4096,slots=16,maxmem=...`.
fn parse_memory(value: &str) -> Option<u64> {
    parse_size(&opt_value(value, "size", "size")?, MIB)
}

/// Parses a qemu size: a number, possibly with a fraction, and an optional
/// suffix B, K, M, G, T, P or E (either case, powers of 1024). A number
/// without a suffix is in `default_unit` bytes.
fn parse_size(text: &str, default_unit: u64) -> Option<u64> {
    let text = text.trim();
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, suffix) = text.split_at(split);
    let unit = match suffix.to_ascii_uppercase().as_str() {
        "" => default_unit,
        "B" => 1,
        "K" => 1 << 10,
        "M" => 1 << 20,
        "G" => 1 << 30,
        "T" => 1 << 40,
        "P" => 1 << 50,
        "E" => 1 << 60,
        _ => return None,
    };
    if let Ok(whole) = number.parse::<u64>() {
        return whole.checked_mul(unit);
    }
    let fraction: f64 = number.parse().ok()?;
    Some((fraction * unit as f64) as u64)
}

/// Size in bytes of a `-object memory-backend-*` in either syntax:
/// `memory-backend-ram,id=pc.ram,size=2147483648` or libvirt 7+'s JSON
/// `{"qom-type":"memory-backend-ram","id":"pc.ram","size":2147483648}`.
fn memory_backend_size(value: &str) -> Option<u64> {
    if value.trim_start().starts_with('{') {
        let object: serde_json::Value = serde_json::from_str(value).ok()?;
        if !object
            .get("qom-type")?
            .as_str()?
            .starts_with("memory-backend-")
        {
            return None;
        }
        return match object.get("size")? {
            serde_json::Value::Number(number) => number.as_u64(),
            serde_json::Value::String(text) => parse_size(text, 1),
            _ => None,
        };
    }
    let qom_type = opt_value(value, "qom-type", "qom-type")?;
    if !qom_type.starts_with("memory-backend-") {
        return None;
    }
    parse_size(&opt_value(value, "size", "qom-type")?, 1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::collect::process::ProcEntry;

    const GIB: u64 = 1024 * MIB;

    /// Splits a command line written on several lines at whitespace; the
    /// test command lines have no spaces inside arguments.
    fn argv(line: &str) -> Vec<String> {
        line.split_whitespace().map(str::to_string).collect()
    }

    /// libvirt 9 on Ubuntu 23.04, nova's q35 guest with two vCPUs and 2 GiB.
    const LIBVIRT_9: &str = r#"/usr/bin/qemu-system-x86_64
        -name guest=instance-00000003,debug-threads=on -S
        -object {"qom-type":"secret","id":"masterKey0","format":"raw","file":"/var/lib/libvirt/qemu/domain-1-instance-00000003/master-key.aes"}
        -machine pc-q35-7.2,usb=off,dump-guest-core=off,memory-backend=pc.ram
        -accel kvm -cpu host,migratable=on -m size=2097152k
        -object {"qom-type":"memory-backend-ram","id":"pc.ram","size":2147483648}
        -overcommit mem-lock=off -smp 2,sockets=2,dies=1,cores=1,threads=1
        -uuid 5d1e4a37-2b0c-4f8e-9d6a-0c1f2e3d4b5a -display none -no-user-config -nodefaults
        -chardev socket,id=charmonitor,fd=30,server=on,wait=off
        -mon chardev=charmonitor,id=monitor,mode=control -rtc base=utc -no-shutdown
        -boot strict=on -device {"driver":"virtio-blk-pci","id":"virtio-disk0"}
        -msg timestamp=on"#;

    /// libvirt 6 on CentOS 8, RHEL's qemu-kvm, four vCPUs and 4096 MiB.
    const LIBVIRT_6: &str = "/usr/libexec/qemu-kvm
        -name guest=instance-0000002a,debug-threads=on -S
        -object secret,id=masterKey0,format=raw,file=/var/lib/libvirt/qemu/domain-7-instance-0000002a/master-key.aes
        -machine pc-i440fx-rhel7.6.0,accel=kvm,usb=off,dump-guest-core=off
        -cpu Skylake-Server-IBRS,ss=on -m 4096 -realtime mlock=off
        -smp 4,sockets=4,cores=1,threads=1 -uuid 9a0f8c3e-1b2d-4e5f-8a7b-6c5d4e3f2a1b
        -smbios type=1,manufacturer=OpenStack Foundation";

    /// libvirt 1.x on Ubuntu 14.04: old `-name`, `-m` in MiB, bare `-smp`.
    const LIBVIRT_1: &str = "/usr/bin/qemu-system-x86_64 -name instance-00000001 -S
        -machine pc-i440fx-trusty,accel=kvm,usb=off -m 512 -realtime mlock=off
        -smp 1,sockets=1,cores=1,threads=1 -uuid 0b6f3b4e-4c1a-4e0e-8b5b-1f2e3d4c5b6a";

    #[test]
    fn libvirt_command_lines() {
        struct Case {
            line: &'static str,
            name: &'static str,
            uuid: &'static str,
            vcpus: u32,
            memory_bytes: u64,
        }
        let cases = [
            Case {
                line: LIBVIRT_9,
                name: "instance-00000003",
                uuid: "5d1e4a37-2b0c-4f8e-9d6a-0c1f2e3d4b5a",
                vcpus: 2,
                memory_bytes: 2 * GIB,
            },
            Case {
                line: LIBVIRT_6,
                name: "instance-0000002a",
                uuid: "9a0f8c3e-1b2d-4e5f-8a7b-6c5d4e3f2a1b",
                vcpus: 4,
                memory_bytes: 4 * GIB,
            },
            Case {
                line: LIBVIRT_1,
                name: "instance-00000001",
                uuid: "0b6f3b4e-4c1a-4e0e-8b5b-1f2e3d4c5b6a",
                vcpus: 1,
                memory_bytes: 512 * MIB,
            },
        ];
        for case in cases {
            let guest = parse_guest(42, &argv(case.line)).unwrap();
            assert_eq!(guest.name, case.name, "{}", case.line);
            assert_eq!(guest.uuid, case.uuid, "{}", case.line);
            assert_eq!(guest.vcpus, case.vcpus, "{}", case.line);
            assert_eq!(guest.memory_bytes, case.memory_bytes, "{}", case.line);
            assert_eq!(guest.pid, 42);
        }
    }

    #[test]
    fn incoming_migration_flag() {
        let incoming = format!("{LIBVIRT_9} -incoming defer");
        let guest = parse_guest(42, &argv(&incoming)).unwrap();
        assert!(guest.incoming_migration);
        let guest = parse_guest(42, &argv(LIBVIRT_9)).unwrap();
        assert!(!guest.incoming_migration);
    }

    #[test]
    fn incoming_migrations_counted() {
        let table = ProcessTable::from_entries(vec![
            ProcEntry {
                pid: 1,
                argv: argv(&format!("{LIBVIRT_6} -incoming tcp:0.0.0.0:49152")),
            },
            ProcEntry {
                pid: 2,
                argv: argv(LIBVIRT_1),
            },
        ]);
        let guests = collect(&table);
        assert_eq!(guests.count, 2);
        assert_eq!(guests.incoming_migrations, 1);
    }

    #[test]
    fn smp_forms() {
        let cases = [
            ("4", Some(4)),
            ("4,sockets=4,cores=1,threads=1", Some(4)),
            ("sockets=2,cores=2,threads=1", Some(4)),
            ("sockets=2,dies=2,cores=2,threads=2", Some(16)),
            ("cpus=8,maxcpus=16", Some(8)),
            ("8,maxcpus=16,sockets=16,cores=1,threads=1", Some(8)),
            ("maxcpus=16", None),
            ("cpus=x", None),
        ];
        for (value, expected) in cases {
            assert_eq!(parse_smp(value), expected, "-smp {value}");
        }
    }

    #[test]
    fn memory_forms() {
        let cases = [
            ("512", Some(512 * MIB)),
            ("size=2097152k", Some(2 * GIB)),
            ("2G", Some(2 * GIB)),
            ("4096M", Some(4 * GIB)),
            ("size=4096,slots=16,maxmem=67108864k", Some(4 * GIB)),
            ("4G,slots=4,maxmem=16G", Some(4 * GIB)),
            ("1.5G", Some(3 * GIB / 2)),
            ("size=12Q", None),
        ];
        for (value, expected) in cases {
            assert_eq!(parse_memory(value), expected, "-m {value}");
        }
    }

    #[test]
    fn backends_count_only_without_m() {
        let numa = "qemu-system-x86_64 -name guest=instance-00000009 -smp 4
            -object memory-backend-ram,id=ram-node0,size=1073741824
            -numa node,nodeid=0,cpus=0-1,memdev=ram-node0
            -object {\"qom-type\":\"memory-backend-file\",\"id\":\"ram-node1\",\"mem-path\":\"/dev/hugepages\",\"size\":1073741824}
            -numa node,nodeid=1,cpus=2-3,memdev=ram-node1";
        assert_eq!(parse_guest(1, &argv(numa)).unwrap().memory_bytes, 2 * GIB);

        let with_m = format!("{numa} -m 1024");
        assert_eq!(parse_guest(1, &argv(&with_m)).unwrap().memory_bytes, GIB);

        let secret_only = "qemu-system-x86_64 -object secret,id=masterKey0,size=999";
        assert_eq!(parse_guest(1, &argv(secret_only)).unwrap().memory_bytes, 0);
    }

    #[test]
    fn name_with_escaped_comma() {
        assert_eq!(parse_name("guest=web,,db,debug-threads=on"), "web,db");
        assert_eq!(
            parse_name("instance-0000002a,process=qemu:x"),
            "instance-0000002a"
        );
    }

    #[test]
    fn qemu_detection() {
        let cases = [
            ("/usr/bin/qemu-system-x86_64 -name guest=a", true),
            ("/usr/bin/qemu-system-aarch64", true),
            ("/usr/libexec/qemu-kvm -name guest=a", true),
            ("qemu-kvm", true),
            ("/usr/sbin/libvirtd --listen", false),
            ("/usr/bin/qemu-img convert -O raw a b", false),
            ("/usr/bin/virtlogd", false),
        ];
        for (line, expected) in cases {
            assert_eq!(is_qemu(&argv(line)), expected, "{line}");
        }
        assert!(!is_qemu(&[]));
    }

    #[test]
    fn totals_over_table() {
        let table = ProcessTable::from_entries(vec![
            ProcEntry {
                pid: 100,
                argv: argv(LIBVIRT_9),
            },
            ProcEntry {
                pid: 200,
                argv: argv("/usr/sbin/libvirtd --timeout 120"),
            },
            ProcEntry {
                pid: 300,
                argv: argv(LIBVIRT_6),
            },
        ]);
        let guests = collect(&table);
        assert_eq!(guests.count, 2);
        assert_eq!(guests.vcpus, 6);
        assert_eq!(guests.memory_bytes, 6 * GIB);
        let pids: Vec<u32> = guests.guests.iter().map(|g| g.pid).collect();
        assert_eq!(pids, vec![100, 300]);
    }
}
