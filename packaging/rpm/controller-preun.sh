# novamedic %preun ($1: 0 on erase, 1 on upgrade): stops and disables
# the controller on erase only.
if [ "$1" -eq 0 ]; then
    systemctl --no-reload disable --now novamedic.service >/dev/null 2>&1 || :
fi
exit 0
