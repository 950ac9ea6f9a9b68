# novamedic-agent %postun ($1: 0 on erase, 1 on upgrade): restarts the
# agent on the new version after an upgrade. The novamedic user and
# /var/lib/novamedic-agent stay after an erase, as RPM packages do.
if [ -d /run/systemd/system ]; then
    systemctl daemon-reload >/dev/null 2>&1 || :
    if [ "$1" -ge 1 ]; then
        systemctl try-restart novamedic-agent.service >/dev/null 2>&1 || :
    fi
fi
exit 0
