//! `injector cleanup`: removes what a daemon that died without cleaning up
//! left in the kernel, without starting a daemon. While another daemon runs,
//! only what dead daemons' journals list is removed (the live one's objects
//! are its own to remove).

use crate::kernel::{cleanup, lock, netlink::Netlink};

pub async fn cleanup(json: bool) -> anyhow::Result<()> {
    let lock = lock::try_exclusive()?;
    let alone = lock.is_some();
    let nl = Netlink::current()?;
    let removed = cleanup::leftovers(&nl, alone).await;
    drop(lock);
    if json {
        println!(
            "{}",
            serde_json::json!({ "removed": removed, "daemon_running": !alone })
        );
        return Ok(());
    }
    if !alone {
        println!(
            "an injector daemon is running on this host (it holds {}/dataplane.lock): \
             only the journals of dead daemons were replayed; stop it to remove its faults",
            lock::RUN_DIR
        );
    }
    if removed.is_empty() {
        println!("nothing to remove: the kernel holds nothing of injector's that can go");
    } else {
        for r in &removed {
            println!("removed {r}");
        }
    }
    Ok(())
}
