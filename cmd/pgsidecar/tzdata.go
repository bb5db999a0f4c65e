package main

// Schedules may name their time zone (CRON_TZ=Europe/Paris 0 1 * * *): the
// binary carries the zone database, so that this works in a container
// without /usr/share/zoneinfo.
import _ "time/tzdata"
