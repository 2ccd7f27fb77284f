# Locale oracle, one input: what cloud-init 22.4.2's locale module runs on Debian
# (distros/debian.py apply_locale → regenerate_locale, update_locale_conf), with the user-data's
# /etc/locale.gen (written earlier by write-files) in place:
#   locale-gen LOCALE      (skipped for C, C.UTF-8 and POSIX; Debian's locale-gen ignores its
#                           argument and generates what /etc/locale.gen lists)
#   update-locale --locale-file=/etc/default/locale LANG=LOCALE   (refuses a locale not generated)
# Both always run here, although cloud-init skips them when /etc/default/locale already names the
# locale: that is stricter, never laxer.
#
# in:  files.list (+ bodies), locale
# out: gen.*, update.* (see lib.sh)
source /run/kiln-drivers/lib.sh

put_files init 0
locale=$(cat "$in/locale")
case ${locale,,} in
  c | c.utf-8 | posix) ;;
  *) record gen locale-gen "$locale" ;;
esac
record update update-locale --locale-file=/etc/default/locale "LANG=$locale"
