//! What the report plots share: the result type of a plot and the legend box style.

use plotters::coord::CoordTranslate;
use plotters::prelude::*;

/// A plot drawn, or why not.
pub type PlotResult = Result<(), Box<dyn std::error::Error>>;

/// Draw the chart's series labels at `pos` in a white, black-bordered box.
pub fn draw_legend<'a, DB, CT>(
    c: &mut ChartContext<'a, DB, CT>,
    pos: SeriesLabelPosition,
) -> PlotResult
where
    DB: DrawingBackend + 'a,
    DB::ErrorType: 'static,
    CT: CoordTranslate,
{
    c.configure_series_labels()
        .position(pos)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()?;
    Ok(())
}
