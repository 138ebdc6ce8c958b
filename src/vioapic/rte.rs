//! Redirection-table entry fields (FreeBSD `IOART_*`).

pub const VECTOR: u64 = 0xFF;
/// Delivery mode, bits 10:8 (same encoding as the local APIC's).
pub const DELMOD: u64 = 0x700;
/// Destination mode: set = logical.
pub const DESTMOD: u64 = 0x800;
/// Delivery status (read-only).
pub const DELIVS: u64 = 0x1000;
/// Polarity: set = active low.
pub const INTPOL: u64 = 0x2000;
/// Remote IRR (read-only): a level interrupt was sent and not yet EOIed.
pub const REM_IRR: u64 = 0x4000;
/// Trigger mode: set = level.
pub const TRGRLVL: u64 = 0x8000;
pub const INTMASK: u64 = 0x1_0000;
pub const DEST_SHIFT: u32 = 56;
pub const DEST: u64 = 0xFF << DEST_SHIFT;

/// Bits a guest write never changes.
pub const RO_BITS: u64 = REM_IRR | DELIVS;
/// Reset value of every entry: masked, everything else zero.
pub const RESET: u64 = 0x0001_0000_0001_0000;
/// Fields whose change can move a vector's TMR bit on some vCPU (mask and
/// polarity cannot).
pub const TMR_FIELDS: u64 = VECTOR | DELMOD | DESTMOD | TRGRLVL | DEST;

const DELMODE_FIXED: u32 = 0x000;
const DELMODE_LOWPRIO: u32 = 0x100;

/// A redirection-table entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rte(pub u64);

impl Rte {
    pub fn vector(self) -> u8 {
        (self.0 & VECTOR) as u8
    }
    /// Delivery mode bits as `DELMODE_*` (0x000..=0x700).
    pub fn delmode(self) -> u32 {
        (self.0 & DELMOD) as u32
    }
    pub fn phys(self) -> bool {
        self.0 & DESTMOD == 0
    }
    pub fn level(self) -> bool {
        self.0 & TRGRLVL != 0
    }
    pub fn masked(self) -> bool {
        self.0 & INTMASK != 0
    }
    pub fn remote_irr(self) -> bool {
        self.0 & REM_IRR != 0
    }
    pub fn dest(self) -> u8 {
        (self.0 >> DEST_SHIFT) as u8
    }
    /// `REDIR_IS_LVLTRIG`: a level-triggered entry in fixed or
    /// lowest-priority mode, the only kind that sets TMR bits.
    pub fn affects_tmr(self) -> bool {
        self.level() && matches!(self.delmode(), DELMODE_FIXED | DELMODE_LOWPRIO)
    }

    /// The entry after a guest writes `data` to its low (`high == false`)
    /// or high half: read-only bits kept, remote IRR cleared if the entry
    /// is now edge-triggered (how guests without directed EOI retire a
    /// stuck level interrupt).
    pub fn written(self, data: u32, high: bool) -> Rte {
        let shift = if high { 32 } else { 0 };
        let half = 0xFFFF_FFFFu64 << shift;
        let mut reg = self.0 & (!half | RO_BITS);
        reg |= (u64::from(data) << shift) & !RO_BITS;
        if reg & TRGRLVL == 0 {
            reg &= !REM_IRR;
        }
        Rte(reg)
    }
}
