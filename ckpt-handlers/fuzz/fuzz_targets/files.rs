//! The input format of the fuzz targets that take a set of files (`ocdbt_database`,
//! `orbax_item`): `[u16 le name length][name][u32 le length][bytes]`, repeated; a truncated
//! record ends the set, a length past the end is cut to what is there.

/// The files of `data`, in input order.
pub fn split(mut data: &[u8]) -> Vec<(String, Vec<u8>)> {
    let mut files = Vec::new();
    while data.len() >= 2 {
        let n = u16::from_le_bytes([data[0], data[1]]) as usize;
        data = &data[2..];
        if data.len() < n + 4 {
            break;
        }
        let name = String::from_utf8_lossy(&data[..n]).into_owned();
        data = &data[n..];
        let len = u32::from_le_bytes([data[0], data[1], data[2], data[3]]) as usize;
        data = &data[4..];
        let len = len.min(data.len());
        files.push((name, data[..len].to_vec()));
        data = &data[len..];
    }
    files
}
