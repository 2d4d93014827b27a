#!/bin/bash
# Mounts the broker's data device at /var/lib/strata; run at every boot by
# strata-data.service, before strata.service.
#
# Instance store (the default): the instance's NVMe instance-store devices, striped
# with RAID 0 when there are several. Instance store survives a reboot but is blank
# after a stop/start or on a new instance: the file system is then created again and
# the broker, finding an empty log directory, recovers its replicas from its peers
# and reads older segments from S3. On Nitro the devices are encrypted by the
# hardware (AES-256, keys that never leave the instance).
#
# EBS (data_volume_size > 0): the attached volume whose serial is its volume id.
set -euo pipefail
# shellcheck source=/dev/null
. /etc/strata/bootstrap.env
mnt=/var/lib/strata
log() { echo "strata-prepare-data: $*" >&2; }

if mountpoint -q "$mnt"; then
  exit 0
fi

dev=""
if [ -n "$STRATA_DATA_VOLUME_ID" ]; then
  # NVMe EBS devices carry the volume id without its dash as their serial. The
  # attachment is made after the instance starts: wait for it.
  serial=${STRATA_DATA_VOLUME_ID//-/}
  for _ in $(seq 1 120); do
    dev=$(lsblk --nodeps --noheadings --paths --output NAME,SERIAL | awk -v s="$serial" '$2 == s { print $1 }')
    [ -n "$dev" ] && break
    sleep 5
  done
  if [ -z "$dev" ]; then
    log "EBS volume $STRATA_DATA_VOLUME_ID did not appear"
    exit 1
  fi
else
  mapfile -t devices < <(lsblk --nodeps --noheadings --paths --output NAME,MODEL | awk '/Instance Storage/ { print $1 }')
  case ${#devices[@]} in
    0)
      log "no NVMe instance store found; use an instance type with one or set data_volume_size"
      exit 1
      ;;
    1)
      dev=${devices[0]}
      ;;
    *)
      command -v mdadm >/dev/null || dnf install -y -q mdadm
      # After a reboot udev has usually assembled the array already.
      [ -e /dev/md/strata ] || mdadm --assemble --scan >/dev/null 2>&1 || true
      if [ ! -e /dev/md/strata ]; then
        log "striping ${devices[*]} into /dev/md/strata (RAID 0)"
        mdadm --create /dev/md/strata --run --level=0 --name=strata --homehost=any \
          --raid-devices="${#devices[@]}" "${devices[@]}"
      fi
      dev=$(readlink -f /dev/md/strata)
      ;;
  esac
fi

if [ -z "$(blkid --match-tag TYPE --output value "$dev" || true)" ]; then
  log "creating an XFS file system on $dev"
  mkfs.xfs -q -L strata-data "$dev"
fi
mkdir -p "$mnt"
mount -o noatime "$dev" "$mnt"
chown strata:strata "$mnt"
chmod 0750 "$mnt"
log "$dev mounted at $mnt"
