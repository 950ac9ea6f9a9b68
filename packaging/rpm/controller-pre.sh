# novamedic %pre: the novamedic system user and group.
getent group novamedic >/dev/null || groupadd --system novamedic
getent passwd novamedic >/dev/null ||
    useradd --system --gid novamedic --home-dir /nonexistent --no-create-home \
        --shell /sbin/nologin --comment "novamedic controller" novamedic
exit 0
