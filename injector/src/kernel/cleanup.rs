//! What a daemon that died without cleaning up can leave in the kernel, and
//! its removal. BPF links (tcx, cgroup bpf_link) die with the process; qdiscs,
//! IFB devices and legacy clsact filters do not. The journal lists exactly
//! what was created; names and handles (every object injector creates is
//! recognisable) catch anything a lost journal missed.

use super::{
    journal::{self, Object},
    netlink::Netlink,
    tc::{ROOT_MAJOR, TC_H_ROOT, root_handle},
};

/// Name prefix of the IFB devices injector creates.
pub const IFB_PREFIX: &str = "inj-ifb";

/// Removes injector's leftovers from the host namespace; returns what it
/// removed, for the log. The journals of dead daemons are always replayed;
/// the sweep by names and handles, which cannot tell whose an object is,
/// only when `alone` (no other data plane lives).
pub async fn leftovers(nl: &Netlink, alone: bool) -> Vec<String> {
    let mut removed = Vec::new();
    let Ok(links) = nl.links().await else {
        return removed;
    };
    for orphan in journal::orphans() {
        for o in orphan.outstanding() {
            remove(nl, &links, o, &mut removed).await;
        }
        orphan.discard();
    }
    if alone {
        sweep(nl, &mut removed).await;
    }
    removed
}

/// Removes one journalled object, if the kernel still holds it as we left it.
async fn remove(
    nl: &Netlink,
    links: &[super::netlink::Link],
    o: Object,
    removed: &mut Vec<String>,
) {
    match o {
        Object::RootQdisc {
            ifindex,
            ifname,
            handle,
        } => {
            // Only if the interface is still the one we changed.
            if links.iter().any(|l| l.index == ifindex && l.name == ifname)
                && nl.qdisc_del(ifindex, TC_H_ROOT, handle).await.is_ok()
            {
                removed.push(format!("root htb on {ifname} (journal)"));
            }
        }
        Object::Ifb { name } => {
            if let Some(l) = links.iter().find(|l| l.name == name)
                && nl.del_link(l.index).await.is_ok()
            {
                removed.push(format!("ifb {name} (journal)"));
            }
        }
        Object::RedirectFilter { ifname } => {
            if let Some(l) = links.iter().find(|l| l.name == ifname)
                && nl
                    .filter_del(l.index, super::CLSACT_INGRESS, super::REDIRECT_PRIO)
                    .await
                    .is_ok()
            {
                removed.push(format!("redirect filter on {ifname} (journal)"));
            }
        }
        Object::Clsact { ifname } => {
            if let Some(l) = links.iter().find(|l| l.name == ifname)
                && nl
                    .qdisc_del(l.index, 0xffff_fff1, 0xffff_0000)
                    .await
                    .is_ok()
            {
                removed.push(format!("clsact on {ifname} (journal)"));
            }
        }
    }
}

async fn sweep(nl: &Netlink, removed: &mut Vec<String>) {
    let Ok(links) = nl.links().await else {
        return;
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
}
