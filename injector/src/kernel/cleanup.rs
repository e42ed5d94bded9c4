//! What a daemon that died without cleaning up can leave in the kernel, and
//! its removal. BPF links (tcx, cgroup bpf_link) die with the process; qdiscs,
//! IFB devices and legacy clsact filters do not. Everything injector creates
//! is named or numbered so it can be recognised here without a journal.

use super::{
    netlink::Netlink,
    tc::{ROOT_MAJOR, TC_H_ROOT, root_handle},
};

/// Name prefix of the IFB devices injector creates.
pub const IFB_PREFIX: &str = "inj-ifb";

/// Removes injector's leftovers from the host namespace; returns what it
/// removed, for the log.
pub async fn leftovers(nl: &Netlink) -> Vec<String> {
    let mut removed = Vec::new();
    let Ok(links) = nl.links().await else {
        return removed;
    };
    for l in &links {
        if l.name.starts_with(IFB_PREFIX) {
            if nl.del_link(l.index).await.is_ok() {
                removed.push(format!("ifb {}", l.name));
            }
            continue;
        }
        if let Ok(qdiscs) = nl.qdiscs(l.index).await
            && qdiscs
                .iter()
                .any(|q| q.parent == TC_H_ROOT && q.handle >> 16 == ROOT_MAJOR as u32)
            && nl
                .qdisc_del(l.index, TC_H_ROOT, root_handle())
                .await
                .is_ok()
        {
            removed.push(format!("root htb on {}", l.name));
        }
        // Kernels before 6.6 attach through netlink cls_bpf filters, which
        // outlive the process.
        for (kind, prog) in [
            (aya::programs::TcAttachType::Ingress, "tc_ingress"),
            (aya::programs::TcAttachType::Egress, "tc_egress"),
        ] {
            if aya::programs::tc::qdisc_detach_program(&l.name, kind, prog).is_ok() {
                removed.push(format!("{prog} filter on {}", l.name));
            }
        }
    }
    removed
}
