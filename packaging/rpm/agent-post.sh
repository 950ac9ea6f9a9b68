# novamedic-agent %post ($1: 1 on install, 2 on upgrade).
# nova: read nova.conf. adm and systemd-journal: read nova's log directory
# and the journal. A group that does not exist yet is skipped.
for group in nova adm systemd-journal; do
    if getent group "$group" >/dev/null; then
        usermod --append --groups "$group" novamedic
    fi
done
# The agent reads its TLS key as novamedic: keys placed before the package
# was installed become root:novamedic 0640.
for key in /etc/novamedic/tls/*.key; do
    if [ -f "$key" ]; then
        chgrp novamedic "$key"
        chmod 0640 "$key"
    fi
done
if [ "$1" -eq 1 ]; then
    systemctl --no-reload preset novamedic-agent.service >/dev/null 2>&1 || :
fi
if [ -d /run/systemd/system ]; then
    systemctl daemon-reload >/dev/null 2>&1 || :
    if [ "$1" -eq 1 ]; then
        systemctl start novamedic-agent.service >/dev/null 2>&1 || :
    fi
fi
exit 0
