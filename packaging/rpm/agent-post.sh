# novamedic-agent %post ($1: 1 on install, 2 on upgrade).
# nova: read nova.conf. adm and systemd-journal: read nova's log directory
# and the journal. A group that does not exist yet is skipped.
for group in nova adm systemd-journal; do
    if getent group "$group" >/dev/null; then
        usermod --append --groups "$group" novamedic
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
