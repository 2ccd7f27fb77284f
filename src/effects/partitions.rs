//! The partitions of a raw disk image, from `sfdisk --json` (util-linux): where its root file system and
//! its EFI system partition are, found by their GPT types as the discoverable-partitions spec has them.

use std::path::Path;
use std::process::Command;

use anyhow::{Context as _, Result, bail};

use super::process::run;

/// The GPT types a root file system has: the discoverable-partitions x86-64 root (kiln's images), then
/// plain "Linux filesystem" (Debian's and Ubuntu's cloud images).
const ROOT_TYPES: [&str; 2] = ["4F68BCE3-E8CD-4DB1-96E7-FBCAF984B709", "0FC63DAF-8483-4772-8E79-3D69D8477DE4"];
/// The EFI system partition's GPT type.
const ESP_TYPES: [&str; 1] = ["C12A7328-F81F-11D2-BA4B-00A0C93EC93B"];

/// A partition's place in the disk, in bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Span {
    pub offset: u64,
    pub size: u64,
}

/// A GPT partition table.
#[derive(Debug, serde::Deserialize)]
pub struct Table {
    label: String,
    sectorsize: Option<u64>,
    /// sfdisk leaves the field out for a table with no partitions.
    #[serde(default)]
    partitions: Vec<Partition>,
}

#[derive(Debug, serde::Deserialize)]
struct Partition {
    start: u64,
    size: u64,
    #[serde(rename = "type")]
    kind: String,
}

/// The partition table of the raw disk `raw`.
pub fn read(raw: &Path) -> Result<Table> {
    let out = run(Command::new("sfdisk").arg("--json").arg(raw), "sfdisk --json (the disk's partitions)")?;
    Table::parse(&String::from_utf8_lossy(&out.stdout))
}

impl Table {
    pub fn parse(sfdisk_json: &str) -> Result<Table> {
        #[derive(serde::Deserialize)]
        struct Dump {
            partitiontable: Table,
        }
        let dump: Dump = serde_json::from_str(sfdisk_json).context("reading sfdisk's JSON")?;
        if dump.partitiontable.label != "gpt" {
            bail!(
                "the disk has a `{}` partition table; kiln finds its partitions by GPT type",
                dump.partitiontable.label
            );
        }
        Ok(dump.partitiontable)
    }

    /// The root file system's partition.
    pub fn root(&self) -> Result<Span> {
        self.only_one(&ROOT_TYPES, "a root file system's")
    }

    /// The EFI system partition.
    pub fn esp(&self) -> Result<Span> {
        self.only_one(&ESP_TYPES, "an EFI system partition's")
    }

    /// The one partition of the first of `types` the disk has any of.
    fn only_one(&self, types: &[&str], what: &str) -> Result<Span> {
        let sector = self.sectorsize.unwrap_or(512);
        for wanted in types {
            let found: Vec<&Partition> =
                self.partitions.iter().filter(|p| p.kind.eq_ignore_ascii_case(wanted)).collect();
            match found.as_slice() {
                [] => continue,
                [one] => return Ok(Span { offset: one.start * sector, size: one.size * sector }),
                _ => bail!("the disk has {} partitions of type {wanted}: which one is meant is unclear", found.len()),
            }
        }
        bail!("the disk has no partition of {what} GPT type ({})", types.join(" or "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `sfdisk --json` (util-linux 2.38.1) on kiln's Debian 13 base image converted to raw, as `read` runs it.
    const KILN_BASE: &str = r#"{
   "partitiontable": {
      "label": "gpt",
      "id": "6A1F0B4E-5D2C-4F0E-9B7A-3C8D2E1F4A51",
      "device": "/var/tmp/native-probe/native.raw",
      "unit": "sectors",
      "firstlba": 2048,
      "lastlba": 8388574,
      "sectorsize": 512,
      "partitions": [
         {
            "node": "/var/tmp/native-probe/native.raw1",
            "start": 2048,
            "size": 522240,
            "type": "C12A7328-F81F-11D2-BA4B-00A0C93EC93B",
            "uuid": "5E1D7A2C-0B3F-4C6E-8A9D-1F2E3D4C5C01",
            "name": "esp"
         },{
            "node": "/var/tmp/native-probe/native.raw2",
            "start": 524288,
            "size": 7862272,
            "type": "4F68BCE3-E8CD-4DB1-96E7-FBCAF984B709",
            "uuid": "5E1D7A2C-0B3F-4C6E-8A9D-1F2E3D4C5C02",
            "name": "root"
         }
      ]
   }
}"#;

    #[test]
    fn the_root_filesystem_is_found_by_its_gpt_type() {
        assert_eq!(
            Table::parse(KILN_BASE).unwrap().root().unwrap(),
            Span { offset: 524288 * 512, size: 7862272 * 512 }
        );
        // A cloud image's plain "Linux filesystem" root, with 4 KiB sectors.
        let cloud = KILN_BASE
            .replace("4F68BCE3-E8CD-4DB1-96E7-FBCAF984B709", "0fc63daf-8483-4772-8e79-3d69d8477de4")
            .replace("\"sectorsize\": 512", "\"sectorsize\": 4096");
        assert_eq!(Table::parse(&cloud).unwrap().root().unwrap(), Span { offset: 524288 * 4096, size: 7862272 * 4096 });
    }

    #[test]
    fn a_table_without_one_clear_root_is_refused_with_the_reason() {
        let none = KILN_BASE.replace("4F68BCE3-E8CD-4DB1-96E7-FBCAF984B709", "E6D6D379-F507-44C2-A23C-238F2A3DF928");
        assert!(
            Table::parse(&none)
                .unwrap()
                .root()
                .unwrap_err()
                .to_string()
                .contains("no partition of a root file system's GPT type")
        );
        let two = KILN_BASE.replace("C12A7328-F81F-11D2-BA4B-00A0C93EC93B", "4F68BCE3-E8CD-4DB1-96E7-FBCAF984B709");
        assert!(Table::parse(&two).unwrap().root().unwrap_err().to_string().contains("2 partitions of type"));
        let mbr = KILN_BASE.replace("\"gpt\"", "\"dos\"");
        assert!(Table::parse(&mbr).unwrap_err().to_string().contains("`dos` partition table"));
        assert!(Table::parse("not json").is_err());
    }

    #[test]
    fn the_esp_is_found_by_its_gpt_type() {
        assert_eq!(Table::parse(KILN_BASE).unwrap().esp().unwrap(), Span { offset: 2048 * 512, size: 522240 * 512 });
    }
}
