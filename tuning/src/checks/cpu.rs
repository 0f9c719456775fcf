//! CPU topology as the broker sees it: how many CPUs it may use, which are
//! SMT siblings, which NUMA node each belongs to, which are isolated from
//! the scheduler, and how their clocks are governed. Also where shards go
//! ([`shard_cpus`]), which decides where interrupts should not.
//!
//! Sources: `/sys/devices/system/cpu/{online,isolated}`,
//! `cpuN/topology/thread_siblings_list`, `cpuN/cpufreq/scaling_governor`,
//! `/sys/devices/system/node/{online,nodeN/cpulist}` and
//! `sched_getaffinity` for this process.

use std::collections::BTreeMap;

use super::Check;
use crate::cpulist::{format_cpu_list, parse_cpu_list};
use crate::sysfs;

/// A CPU's frequency governor and the ones its driver offers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Governor {
    pub current: String,
    pub available: Vec<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CpuObservation {
    /// CPUs the kernel has online.
    pub online: Vec<usize>,
    /// CPUs this process may run on (its affinity mask, narrowed by
    /// cpusets in containers).
    pub usable: Vec<usize>,
    /// Each online CPU's SMT siblings, itself included.
    pub thread_siblings: BTreeMap<usize, Vec<usize>>,
    /// Each NUMA node's CPUs; empty when the kernel exposes no nodes.
    pub numa_nodes: BTreeMap<usize, Vec<usize>>,
    /// CPUs removed from scheduler balancing (`isolcpus=`).
    pub isolated: Vec<usize>,
    /// Each CPU's governor; empty without a cpufreq driver (most VMs).
    pub governors: BTreeMap<usize, Governor>,
}

const CPU_ROOT: &str = "/sys/devices/system/cpu";
const NODE_ROOT: &str = "/sys/devices/system/node";

/// The number of CPUs this process may run on: the default shard count.
pub fn usable_cpu_count() -> usize {
    usable_cpus().len().max(1)
}

/// This process's CPU affinity.
pub fn usable_cpus() -> Vec<usize> {
    // SAFETY: cpu_set_t is plain bits; all-zero is the empty set.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: sched_getaffinity writes at most size_of::<cpu_set_t>() bytes
    // into the set we own.
    let result = unsafe { libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) };
    if result != 0 {
        let count = std::thread::available_parallelism().map_or(1, |n| n.get());
        return (0..count).collect();
    }
    (0..libc::CPU_SETSIZE as usize)
        // SAFETY: the index is below CPU_SETSIZE, the set's capacity.
        .filter(|&cpu| unsafe { libc::CPU_ISSET(cpu, &set) })
        .collect()
}

fn read_list(path: &str) -> Option<Vec<usize>> {
    parse_cpu_list(&sysfs::read_optional(path)?).ok()
}

/// Reads the live topology.
pub fn observe() -> CpuObservation {
    let usable = usable_cpus();
    let online = read_list(&format!("{CPU_ROOT}/online")).unwrap_or_else(|| usable.clone());
    let mut thread_siblings = BTreeMap::new();
    let mut governors = BTreeMap::new();
    for &cpu in &online {
        let base = format!("{CPU_ROOT}/cpu{cpu}");
        if let Some(siblings) = read_list(&format!("{base}/topology/thread_siblings_list")) {
            thread_siblings.insert(cpu, siblings);
        }
        if let Some(current) = sysfs::read_optional(format!("{base}/cpufreq/scaling_governor")) {
            let available = sysfs::read_optional(format!("{base}/cpufreq/scaling_available_governors"))
                .map(|text| text.split_whitespace().map(str::to_string).collect())
                .unwrap_or_default();
            governors.insert(cpu, Governor { current, available });
        }
    }
    let mut numa_nodes = BTreeMap::new();
    for node in read_list(&format!("{NODE_ROOT}/online")).unwrap_or_default() {
        if let Some(cpus) = read_list(&format!("{NODE_ROOT}/node{node}/cpulist")) {
            numa_nodes.insert(node, cpus);
        }
    }
    CpuObservation {
        online,
        usable,
        thread_siblings,
        numa_nodes,
        isolated: read_list(&format!("{CPU_ROOT}/isolated")).unwrap_or_default(),
        governors,
    }
}

/// The physical cores among `cpus`: groups of SMT siblings, each sorted.
fn cores_of(observation: &CpuObservation, cpus: &[usize]) -> Vec<Vec<usize>> {
    let mut cores: BTreeMap<Vec<usize>, Vec<usize>> = BTreeMap::new();
    for &cpu in cpus {
        let key = observation.thread_siblings.get(&cpu).cloned().unwrap_or_else(|| vec![cpu]);
        cores.entry(key).or_default().push(cpu);
    }
    cores.into_values().collect()
}

/// The CPUs the broker's shards run on: one shard per physical core first,
/// taking the highest-numbered cores, then second SMT threads if there are
/// more shards than cores. CPU 0 and the other low CPUs, which carry most
/// kernel housekeeping, stay free for interrupts whenever there are fewer
/// shards than CPUs.
///
/// This is the placement `pinion-tune apply` routes interrupts around; the
/// broker pins its executors the same way.
pub fn shard_cpus(observation: &CpuObservation, shards: usize) -> Vec<usize> {
    let mut cores = cores_of(observation, &observation.usable);
    // Highest core first; within a core, highest thread first.
    for core in &mut cores {
        core.sort_unstable_by(|a, b| b.cmp(a));
    }
    cores.sort_unstable_by(|a, b| b[0].cmp(&a[0]));
    let mut chosen = Vec::with_capacity(shards);
    let threads_max = cores.iter().map(Vec::len).max().unwrap_or(0);
    'rounds: for round in 0..threads_max {
        for core in &cores {
            if chosen.len() == shards {
                break 'rounds;
            }
            if let Some(&cpu) = core.get(round) {
                chosen.push(cpu);
            }
        }
    }
    chosen.sort_unstable();
    chosen
}

/// The online CPUs that run no shard: where interrupts belong.
pub fn housekeeping_cpus(online: &[usize], shard_cpus: &[usize]) -> Vec<usize> {
    online.iter().copied().filter(|cpu| !shard_cpus.contains(cpu)).collect()
}

pub fn check_cpus(observation: &CpuObservation, shards: usize) -> Check {
    const NAME: &str = "cpus";
    let usable = &observation.usable;
    let mut found = format!(
        "{} online ({}), {} usable by this process",
        observation.online.len(),
        format_cpu_list(&observation.online),
        usable.len()
    );
    if usable != &observation.online {
        found.push_str(&format!(" ({})", format_cpu_list(usable)));
    }
    found.push_str(&format!(", {shards} shard{}", if shards == 1 { "" } else { "s" }));
    if shards == 0 {
        return Check::fail(NAME, found, "run at least one shard (--shards 1)");
    }
    if shards > usable.len() {
        return Check::fail(
            NAME,
            format!("{found}: more shards than CPUs to pin them to"),
            format!("run with --shards {} or give the broker more CPUs (cpuset, docker --cpuset-cpus)", usable.len()),
        );
    }
    let placed = shard_cpus(observation, shards);
    Check::ok(NAME, format!("{found} on CPUs {}", format_cpu_list(&placed)))
}

pub fn check_smt(observation: &CpuObservation, shard_cpus: &[usize]) -> Check {
    const NAME: &str = "smt";
    let threads_per_core = observation.thread_siblings.values().map(Vec::len).max().unwrap_or(1);
    let usable_cores = cores_of(observation, &observation.usable).len();
    if threads_per_core <= 1 {
        return Check::ok(NAME, format!("off: {usable_cores} usable cores, one thread each"));
    }
    let shared: Vec<Vec<usize>> = cores_of(observation, shard_cpus).into_iter().filter(|core| core.len() > 1).collect();
    if shared.is_empty() {
        return Check::ok(
            NAME,
            format!(
                "on, {threads_per_core} threads per core; {usable_cores} usable cores, each shard has one to itself"
            ),
        );
    }
    let pairs: Vec<String> = shared.iter().map(|core| format_cpu_list(core)).collect();
    Check::warn(
        NAME,
        format!(
            "on, {threads_per_core} threads per core; shards on CPUs {} share a core and compete for its execution units",
            pairs.join(" and ")
        ),
        format!("run one shard per physical core: --shards {usable_cores}"),
    )
}

pub fn check_numa(observation: &CpuObservation, shard_cpus: &[usize]) -> Check {
    const NAME: &str = "numa";
    if observation.numa_nodes.len() <= 1 {
        return Check::ok(NAME, "one node");
    }
    let layout: Vec<String> =
        observation.numa_nodes.iter().map(|(node, cpus)| format!("node{node}: {}", format_cpu_list(cpus))).collect();
    let spanned: Vec<usize> = observation
        .numa_nodes
        .iter()
        .filter(|(_, cpus)| shard_cpus.iter().any(|cpu| cpus.contains(cpu)))
        .map(|(node, _)| *node)
        .collect();
    let found = format!("{} nodes ({})", observation.numa_nodes.len(), layout.join(", "));
    if spanned.len() > 1 {
        Check::warn(
            NAME,
            format!("{found}; shards span {} nodes, so cross-shard messages and page cache cross the interconnect", spanned.len()),
            "run one broker per node: `numactl --cpunodebind=N --membind=N pinion serve`, or accept the cross-node cost",
        )
    } else {
        Check::ok(NAME, format!("{found}; shards all on one node"))
    }
}

pub fn check_isolated(observation: &CpuObservation, shard_cpus: &[usize]) -> Check {
    const NAME: &str = "isolated_cpus";
    let isolated = &observation.isolated;
    if isolated.is_empty() {
        return Check::ok(NAME, "none (no isolcpus=)");
    }
    let list = format_cpu_list(isolated);
    if !observation.usable.iter().any(|cpu| isolated.contains(cpu)) {
        return Check::warn(
            NAME,
            format!(
                "{list} isolated, but this process may only run on {}: shards cannot use them",
                format_cpu_list(&observation.usable)
            ),
            format!("start the broker pinned to them: `taskset -c {list} pinion serve`"),
        );
    }
    let on_isolated: Vec<usize> = shard_cpus.iter().copied().filter(|cpu| isolated.contains(cpu)).collect();
    Check::ok(NAME, format!("{list} isolated; {} of {} shards run there", on_isolated.len(), shard_cpus.len()))
}

pub fn check_governor(observation: &CpuObservation) -> Check {
    const NAME: &str = "cpu_governor";
    if observation.governors.is_empty() {
        return Check::ok(NAME, "no cpufreq driver (virtual machine or fixed clock)");
    }
    let mut by_governor: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
    for (cpu, governor) in &observation.governors {
        by_governor.entry(&governor.current).or_default().push(*cpu);
    }
    let found: Vec<String> =
        by_governor.iter().map(|(name, cpus)| format!("{name} on {}", format_cpu_list(cpus))).collect();
    let found = found.join(", ");
    let fixable = observation
        .governors
        .values()
        .any(|g| g.current != "performance" && g.available.iter().any(|a| a == "performance"));
    if fixable {
        Check::warn(
            NAME,
            format!("{found}: cores clock up only under sustained load, adding latency to bursts"),
            "pinion-tune apply (sets performance), or `cpupower frequency-set -g performance`",
        )
    } else {
        Check::ok(NAME, found)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checks::Status;

    fn list(text: &str) -> Vec<usize> {
        parse_cpu_list(text).unwrap()
    }

    /// This machine: two CPUs, no SMT, one node, no cpufreq.
    fn two_cpu_vm() -> CpuObservation {
        CpuObservation {
            online: list("0-1\n"),
            usable: list("0-1"),
            thread_siblings: [(0, list("0\n")), (1, list("1\n"))].into(),
            numa_nodes: [(0, list("0-1\n"))].into(),
            isolated: list("\n"),
            governors: BTreeMap::new(),
        }
    }

    /// A two-socket host with 2 cores x 2 threads per socket, siblings
    /// numbered Intel-style (cpu N and N+4), performance-capable cpufreq.
    fn two_socket_smt_host() -> CpuObservation {
        let siblings = |cpu: usize| {
            let first = cpu % 4;
            list(&format!("{},{}", first, first + 4))
        };
        CpuObservation {
            online: list("0-7"),
            usable: list("0-7"),
            thread_siblings: (0..8).map(|cpu| (cpu, siblings(cpu))).collect(),
            numa_nodes: [(0, list("0-1,4-5")), (1, list("2-3,6-7"))].into(),
            isolated: Vec::new(),
            governors: (0..8)
                .map(|cpu| {
                    let governor = Governor {
                        current: "powersave".into(),
                        available: vec!["performance".into(), "powersave".into()],
                    };
                    (cpu, governor)
                })
                .collect(),
        }
    }

    #[test]
    fn shards_take_distinct_high_cores_first() {
        let vm = two_cpu_vm();
        assert_eq!(shard_cpus(&vm, 1), vec![1]);
        assert_eq!(shard_cpus(&vm, 2), vec![0, 1]);
        assert_eq!(shard_cpus(&vm, 5), vec![0, 1]);
        let host = two_socket_smt_host();
        assert_eq!(shard_cpus(&host, 2), vec![6, 7]);
        assert_eq!(shard_cpus(&host, 4), vec![4, 5, 6, 7]);
        assert_eq!(shard_cpus(&host, 5), vec![3, 4, 5, 6, 7]);
        // Siblings numbered adjacently (AMD style): 0-1, 2-3, ...
        let mut adjacent = host.clone();
        adjacent.thread_siblings = (0..8).map(|cpu| (cpu, vec![cpu & !1, cpu | 1])).collect();
        assert_eq!(shard_cpus(&adjacent, 2), vec![5, 7]);
        assert_eq!(housekeeping_cpus(&host.online, &[6, 7]), vec![0, 1, 2, 3, 4, 5]);
    }

    #[test]
    fn this_vm_shape_is_all_ok() {
        let vm = two_cpu_vm();
        let shards = shard_cpus(&vm, 2);
        let cpus = check_cpus(&vm, 2);
        assert_eq!(cpus.status, Status::Ok);
        assert_eq!(cpus.found, "2 online (0-1), 2 usable by this process, 2 shards on CPUs 0-1");
        assert_eq!(check_smt(&vm, &shards).status, Status::Ok);
        assert_eq!(check_numa(&vm, &shards).found, "one node");
        assert_eq!(check_isolated(&vm, &shards).status, Status::Ok);
        assert_eq!(check_governor(&vm).status, Status::Ok);
    }

    #[test]
    fn more_shards_than_cpus_fails() {
        let mut vm = two_cpu_vm();
        vm.usable = vec![1];
        let check = check_cpus(&vm, 2);
        assert_eq!(check.status, Status::Fail);
        assert!(check.found.contains("1 usable by this process (1)"), "{}", check.found);
        assert!(check.remedy.unwrap().contains("--shards 1"));
        assert_eq!(check_cpus(&vm, 0).status, Status::Fail);
    }

    #[test]
    fn smt_numa_and_governor_on_a_big_host() {
        let host = two_socket_smt_host();
        let four = shard_cpus(&host, 4);
        assert_eq!(check_smt(&host, &four).status, Status::Ok);
        let six = shard_cpus(&host, 6);
        let smt = check_smt(&host, &six);
        assert_eq!(smt.status, Status::Warn);
        assert!(smt.remedy.unwrap().ends_with("--shards 4"));
        let numa = check_numa(&host, &four);
        assert_eq!(numa.status, Status::Warn, "{}", numa.found);
        assert!(numa.found.starts_with("2 nodes (node0: 0-1,4-5, node1: 2-3,6-7)"));
        assert_eq!(check_numa(&host, &[6, 7]).status, Status::Ok);
        let governor = check_governor(&host);
        assert_eq!(governor.status, Status::Warn);
        assert!(governor.found.starts_with("powersave on 0-7"));
    }

    #[test]
    fn isolated_cpus_outside_the_affinity_warn() {
        let mut host = two_socket_smt_host();
        host.isolated = list("6-7");
        host.usable = list("0-5");
        let check = check_isolated(&host, &shard_cpus(&host, 2));
        assert_eq!(check.status, Status::Warn);
        assert!(check.remedy.unwrap().contains("taskset -c 6-7"));
        host.usable = list("0-7");
        let check = check_isolated(&host, &[6, 7]);
        assert_eq!(check.status, Status::Ok);
        assert_eq!(check.found, "6-7 isolated; 2 of 2 shards run there");
    }

    #[test]
    fn live_topology_is_consistent() {
        let observation = observe();
        assert!(!observation.usable.is_empty());
        assert!(observation.usable.iter().all(|cpu| observation.online.contains(cpu)));
        assert_eq!(usable_cpu_count(), observation.usable.len());
    }
}
