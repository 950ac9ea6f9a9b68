# novamedic %post ($1: 1 on install, 2 on upgrade). The controller is not
# enabled here: set its listen address first, then
# `systemctl enable --now novamedic.service`.
if [ -d /run/systemd/system ]; then
    systemctl daemon-reload >/dev/null 2>&1 || :
fi
exit 0
